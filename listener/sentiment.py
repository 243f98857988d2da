"""Sentiment of customer talk: VADER, taught how customers complain and praise, with reasons.

VADER stays the engine. A `Scorer` gives one VADER analyzer its own copy of VADER's lexicon,
updated with the customer-voice lexicon shipped in `sentiment_lexicon/customer_voice.tsv` and the
user's overrides from `sources.yaml`. Before VADER runs:

- brand and product names are masked, so "Vandelay Pay" never scores its own name;
- multi-word phrases ("never answered", "on hold for # minutes", "zero downtime") become single
  placeholder tokens carrying the phrase's valence, so VADER's own rules (negation, boosters,
  "but", caps, punctuation) apply to them as to any word.

VADER's rules then run sentence by sentence (a "not" or a "but" does not reach across a full
stop), with three customer-voice adjustments: degree words VADER reads literally ("pretty bad",
"ridiculously fast") boost the next word, unknown hyphenated compounds ("best-documented") are
scored by their parts, and in a question that asks for information ("How do I report an
outage?") the topic words of the domain lexicon are not scored. Each score carries an
explanation read off the per-token valences VADER actually computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from itertools import product
from types import MappingProxyType
from typing import Any

from vaderSentiment import vaderSentiment as _vader

from listener import intent as _intent
from listener.jsonlines import read_objects
from listener.lang import detect, normalise, scored
from listener.models import Label, Score

log = logging.getLogger(__name__)

# Bump when the scoring rules in this module change, so stored scores are known to be stale.
RULES_VERSION = "4"
LEXICON_RESOURCE = "customer_voice.tsv"
MAX_EXPLANATION = 8
MAX_VALENCE = 4.0  # VADER's scale
# Sentences repeat across calls (syndicated copies, a thread quoting its opening post): what one
# says is remembered for the last this many sentences, per process (per Scorer for what depends
# on its lexicon). Every remembered value is immutable and depends only on its key.
SENTENCES_REMEMBERED = 4096
# What masked brand/product names become: a token that is in no lexicon and is no VADER modifier.
BRAND_PLACEHOLDER = "xbrandx"
_PHRASE_PLACEHOLDER = "xphr{}x"
# In a phrase, "#" stands for any number written in digits: "on hold for # hours".
NUMBER_WORD = "#"
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*\+?")

Source = str  # "vader" | "domain" | "user"

# Curly quotes and primes as typed on phones and pasted from the web; VADER's negation rules only
# know the ASCII apostrophe ("didn't"), so "didn’t" would otherwise not negate.
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_NEGATORS = frozenset(_vader.NEGATE)
_PUNCTUATION = string.punctuation
# Words VADER scores by their literal meaning that customers use as degree adverbs.
_DEGREE_WORDS = frozenset(
    "pretty super ridiculously stupidly insanely crazy crazily damn damned freaking bloody wicked"  # noqa: SIM905
    " scarily absurdly obscenely mad dangerously stupid seriously".split()
)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SentimentConfig:
    """The `sentiment:` block of sources.yaml, validated.

    `lexicon` maps a single word to a valence on VADER's -4..4 scale (0 makes a word neutral); it
    overrides both VADER and the domain lexicon. `phrases` does the same for multi-word phrases.
    """

    positive_threshold: float = 0.05
    negative_threshold: float = -0.05
    lexicon: Mapping[str, float] = field(default_factory=dict, hash=False)
    phrases: Mapping[str, float] = field(default_factory=dict, hash=False)
    domain_lexicon: bool = True

    def __post_init__(self) -> None:
        for name in ("positive_threshold", "negative_threshold"):
            value = getattr(self, name)
            if not _is_number(value) or not -1.0 <= value <= 1.0:
                raise ValueError(f"sentiment.{name}: must be a number from -1 to 1, got {value!r}")
        if not self.negative_threshold < self.positive_threshold:
            raise ValueError(
                "sentiment.negative_threshold must be below sentiment.positive_threshold "
                f"(got {self.negative_threshold} and {self.positive_threshold})"
            )
        words, phrases = validate_overrides(self.lexicon, self.phrases)
        # Stored read-only and normalised, so two configs that mean the same compare equal.
        object.__setattr__(self, "lexicon", MappingProxyType(words))
        object.__setattr__(self, "phrases", MappingProxyType(phrases))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _normalise_phrase(text: str) -> str:
    return " ".join(text.translate(_QUOTES).lower().split())


def validate_overrides(
    lexicon: Mapping[str, Any], phrases: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """Check user word and phrase overrides; return them normalised (lower case, single spaces).

    Raises ValueError naming the offending key and saying how to fix it.
    """
    words: dict[str, float] = {}
    for raw, valence in lexicon.items():
        where = f"sentiment.lexicon[{raw!r}]"
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"{where}: a word must be a non-empty string")
        word = _normalise_phrase(raw)
        if " " in word:
            raise ValueError(f"{where}: has several words; put it under sentiment.phrases")
        # VADER strips leading/trailing punctuation off tokens longer than two characters, so
        # such a key could never match anything.
        if len(word) > 2 and word != word.strip(string.punctuation):
            raise ValueError(
                f"{where}: leading or trailing punctuation never matches; "
                f"use {word.strip(string.punctuation)!r}"
            )
        words[word] = _check_valence(where, valence)
    normalised: dict[str, float] = {}
    for raw, valence in phrases.items():
        where = f"sentiment.phrases[{raw!r}]"
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"{where}: a phrase must be a non-empty string")
        phrase = _normalise_phrase(raw)
        if " " not in phrase:
            raise ValueError(f"{where}: is a single word; put it under sentiment.lexicon")
        normalised[phrase] = _check_valence(where, valence)
    return words, normalised


def _check_valence(where: str, valence: Any) -> float:
    if not _is_number(valence) or not -MAX_VALENCE <= valence <= MAX_VALENCE:
        raise ValueError(f"{where}: valence must be a number from -4 to 4, got {valence!r}")
    return float(valence)


# --------------------------------------------------------------------------------------------
# The shipped customer-voice lexicon


@dataclass(frozen=True)
class DomainLexicon:
    words: Mapping[str, float]  # word -> valence; 0 means "take it out of VADER's lexicon"
    phrases: Mapping[str, float]  # normalised phrase -> valence; 0 masks the phrase
    digest: str  # of the file's bytes


@lru_cache(maxsize=1)
def load_domain_lexicon() -> DomainLexicon:
    """Parse the shipped lexicon once per process."""
    data = (resources.files("listener") / "sentiment_lexicon" / LEXICON_RESOURCE).read_bytes()
    words, phrases = parse_lexicon(data.decode("utf-8"), LEXICON_RESOURCE)
    digest = hashlib.sha256(data).hexdigest()[:16]
    log.debug("domain lexicon: %d words, %d phrases", len(words), len(phrases))
    return DomainLexicon(MappingProxyType(words), MappingProxyType(phrases), digest)


_MACRO = re.compile(r"@[A-Z_]+")
_GROUP = re.compile(r"\{([^{}]*)\}")


def parse_lexicon(text: str, name: str = "<lexicon>") -> tuple[dict[str, float], dict[str, float]]:
    """Parse the lexicon format described at the top of customer_voice.tsv.

    Raises ValueError with the file name and line number for anything malformed, and for a word or
    phrase given two different valences (a silent "last one wins" hides mistakes).
    """
    macros: dict[str, str] = {}
    words: dict[str, float] = {}
    phrases: dict[str, float] = {}
    origin: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}:{number}"
        fields = re.split(r"\t+", line)
        if _MACRO.fullmatch(fields[0]):
            if len(fields) != 2 or not fields[1].startswith("{"):
                raise ValueError(f"{where}: a macro line is '@NAME<TAB>{{a|b|...}}'")
            macros[fields[0]] = fields[1]
            continue
        if len(fields) < 2:
            raise ValueError(f"{where}: expected 'term<TAB>valence[<TAB>forms]'")
        term, raw_valence, forms = fields[0], fields[1], " ".join(fields[2:]).split()
        try:
            valence = float(raw_valence)
        except ValueError:
            raise ValueError(f"{where}: valence {raw_valence!r} is not a number") from None
        if not -MAX_VALENCE <= valence <= MAX_VALENCE:
            raise ValueError(f"{where}: valence {valence} is outside -4..4")
        try:
            expanded = _expand(_MACRO.sub(lambda m: macros[m.group()], term))
        except KeyError as exc:
            raise ValueError(f"{where}: unknown macro {exc.args[0]}") from None
        if forms and (len(expanded) != 1 or " " in expanded[0]):
            raise ValueError(f"{where}: word forms only go with a single word")
        if forms:
            expanded = [*expanded, *_inflect(expanded[0], forms)]
        for entry in expanded:
            table = phrases if " " in entry else words
            if entry in table and table[entry] != valence:
                raise ValueError(
                    f"{where}: {entry!r} already has valence {table[entry]} (line {origin[entry]})"
                )
            table[entry] = valence
            origin[entry] = number
    return words, phrases


def _expand(term: str) -> list[str]:
    """'{never|not} answered' -> ['never answered', 'not answered']; '{a|}' makes 'a' optional."""
    parts = _GROUP.split(term)
    choices = [[p] if i % 2 == 0 else p.split("|") for i, p in enumerate(parts)]
    out: dict[str, None] = {}  # ordered set
    for combo in product(*choices):
        text = _normalise_phrase("".join(combo))
        if text:
            out[text] = None
    return list(out)


_VOWELS = frozenset("aeiou")


def _inflect(word: str, forms: list[str]) -> list[str]:
    """Regular English forms for a word: 'n' plural, 'v' -s/-ed/-ing; other items are literal."""
    out: list[str] = []
    for code in forms:
        if code == "n":
            out.append(_plural(word))
        elif code == "v":
            out += [_plural(word), _past(word), _gerund(word)]
        else:
            out.append(code.lower())
    return [f for f in dict.fromkeys(out) if f != word]


def _plural(w: str) -> str:
    if w.endswith(("s", "sh", "ch", "x", "z")):
        return w + "es"
    if len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        return w[:-1] + "ies"
    return w + "s"


def _doubles(w: str) -> bool:
    # One-syllable consonant-vowel-consonant words double their last letter: lag -> lagged.
    vowel_groups = len(re.findall(r"[aeiou]+", w))
    return (
        vowel_groups == 1
        and len(w) >= 3
        and w[-1] not in _VOWELS
        and w[-1] not in "wxy"
        and w[-2] in _VOWELS
        and w[-3] not in _VOWELS
    )


def _past(w: str) -> str:
    if w.endswith("e"):
        return w + "d"
    if len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        return w[:-1] + "ied"
    return w + w[-1] + "ed" if _doubles(w) else w + "ed"


def _gerund(w: str) -> str:
    if w.endswith("ie"):
        return w[:-2] + "ying"
    if w.endswith("e") and not w.endswith(("ee", "ye", "oe")):
        return w[:-1] + "ing"
    return w + w[-1] + "ing" if _doubles(w) else w + "ing"


# --------------------------------------------------------------------------------------------
# Phrase matching: one compiled regex over the lower-cased text. Its top level is a character trie
# of the phrases' first words, so at each position only the branches for that letter are tried;
# below the first word, words that share the same continuation share one copy of it, which keeps
# the pattern (and its compile time) small although the lexicon's {a|b} groups expand to thousands
# of phrases.

_END = ""  # marks "a phrase (or word) ends here" in the tries below


def _phrase_pattern(phrases: Iterable[str]) -> str:
    words: dict[str, Any] = {}
    for phrase in phrases:
        node = words
        for word in phrase.split(" "):
            node = node.setdefault(word, {})
        node[_END] = {}
    # Top level: branch on the first letter (a literal, which the regex engine rejects at once),
    # then on the first words sharing that letter and a continuation.
    by_letter: dict[str, dict[str, list[str]]] = {}
    branches = []
    for word, child in words.items():
        if word == NUMBER_WORD:
            branches.append(_NUMBER.pattern + _continuation(child))
        elif word:
            tails = by_letter.setdefault(word[0], {})
            tails.setdefault(_continuation(child), []).append(word[1:])
    for letter in sorted(by_letter):
        rests = [_words(ws) + tail for tail, ws in by_letter[letter].items()]
        branches.append(re.escape(letter) + _alternation(rests))
    return _alternation(branches)


def _continuation(node: dict[str, Any]) -> str:
    """Pattern for what may follow a word: the rest of the phrases through this node."""
    by_tail: dict[str, list[str]] = {}
    for word, child in node.items():
        if word:
            by_tail.setdefault(_continuation(child), []).append(word)
    if not by_tail:
        return ""
    body = _alternation([_words(ws) + tail for tail, ws in by_tail.items()])
    # A phrase may end here while longer ones go on: greedy "?" tries the longer ones first.
    return rf"(?:\s+{body})?" if _END in node else rf"\s+{body}"


def _words(words: list[str]) -> str:
    return _words_cached(tuple(sorted(words)))


@lru_cache(maxsize=4096)
def _words_cached(words: tuple[str, ...]) -> str:
    """Alternation of words as a character trie (shared prefixes are matched once).

    Cached: the lexicon's {a|b} groups put the same word lists under many phrases.
    """
    trie: dict[str, Any] = {}
    for word in words:
        if word == NUMBER_WORD:
            continue
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[_END] = {}
    pattern = _emit(trie)
    if NUMBER_WORD in words:
        pattern = _NUMBER.pattern if not pattern else f"(?:{pattern}|{_NUMBER.pattern})"
    return pattern


def _emit(node: dict[str, Any]) -> str:
    branches = [re.escape(ch) + _emit(node[ch]) for ch in sorted(node) if ch]
    if not branches:
        return ""
    body = _alternation(branches)
    return f"(?:{body})?" if _END in node else body


def _alternation(branches: list[str]) -> str:
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _compile_phrases(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """Lower-case phrases (words separated by single spaces) -> one regex for lower-case text."""
    phrases = [p for p in phrases if p]
    if not phrases:
        return None
    return re.compile(r"(?<!\w)" + _phrase_pattern(phrases) + r"(?!\w)")


@lru_cache(maxsize=16)
def _compile_cached(phrases: frozenset[str]) -> re.Pattern[str] | None:
    # Every Scorer shares the one compiled regex of the shipped lexicon (~0.5 s to build).
    return _compile_phrases(sorted(phrases))


@lru_cache(maxsize=1024)
def _compile_terms(terms: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """Brand/product terms -> (regex, normalised match -> term as configured)."""
    by_key = {_normalise_phrase(t): t for t in terms if t and t.strip()}
    if not by_key:
        return None
    pattern = _compile_phrases(by_key)
    return None if pattern is None else (pattern, by_key)


def _lower(text: str) -> str:
    """Lower-case with the same length, so match offsets in it are offsets in `text`."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters (e.g. "İ") lower-case to two
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return lowered


def _substitute(pattern: re.Pattern[str], text: str, replace: Callable[[str], str]) -> str:
    """`pattern.sub` for a lower-case pattern: matches the lowered text, replaces in `text`."""
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(_lower(text)):
        start, end = match.span()
        pieces += (text[last:start], replace(text[start:end]))
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# --------------------------------------------------------------------------------------------
# VADER, traced


@lru_cache(maxsize=1)
def _vader_base() -> _vader.SentimentIntensityAnalyzer:
    """VADER's own analyzer, loaded once per process (reading its lexicon costs ~100 ms)."""
    return _vader.SentimentIntensityAnalyzer()


@dataclass
class _Trace:
    polarity: dict[str, float]
    tokens: list[str]  # as VADER saw them
    lowered: list[str]  # the same, lower-cased
    shown: list[str]  # as written (a degree word stays "pretty", not VADER's "very")
    sentiments: list[float]  # per token, after all of VADER's rules
    first: list[int]  # per token, the index of the first token of its sentence
    but_at: dict[int, int]  # sentence's first token -> index of its "but"
    asked: list[int]  # topic words not scored because their sentence asks about them
    emphasis: float  # VADER's punctuation amplifier
    cap_diff: bool
    starts: list[int]  # per sentence given, the index of its first token


# Sentence ends: VADER's rules look three words back for a negation and let a "but" reweigh the
# whole text; in "Support said it was fixed. It wasn't. Still crashes." neither should reach
# past a full stop, so the rules run sentence by sentence (VADER's own advice) and the per-token
# valences are summed over the whole snippet as VADER does.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


# A question that asks for information ("How do I report an outage?", "Is there a known issue with
# notifications?", "What happens if the Wi-Fi goes down?") names a topic, not a feeling: the
# customer-voice words in it (outage, issue, goes down: topics by nature) are not scored there.
# VADER's own evaluative words still are ("How do I stop these awful emails?"), and so is a
# question that reports a problem ("Why does it keep crashing?", "Anyone else seeing outages?").
_ASKING = re.compile(
    r"(?:how|what|where|when|which|who|whom|whose|does|do|did|is there|are there|can|could|"
    r"will|would|should|shall|has|have|may|might|any (?:idea|tips|advice|way)|is it possible)\b",
    re.IGNORECASE,
)
_REPORTING = re.compile(
    r"\b(?:anyone else|anybody else|just me|only one|why|again|still|keeps?|seriously)\b",
    re.IGNORECASE,
)


# What people shopping around ask about: "which one has better sync?", "is there a free plan?"
_ASKED_ABOUT = frozenset(
    {"better", "best", "worse", "worst", "easier", "easiest", "safer", "safest"}  # comparing
    | {"free", "cheap", "cheapest", "good"}  # shopping
)


def _asks(sentence: str) -> bool:
    sentence = sentence.strip()
    return (
        sentence.endswith("?")
        and _ASKING.match(sentence) is not None
        and _REPORTING.search(sentence) is None
    )


# One sentence as VADER read it: tokens, lower-cased, as written, valences, the index of its
# "but" (or None), the topic words its question asked about.
_SentenceRead = tuple[
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    tuple[float, ...],
    int | None,
    tuple[int, ...],
]


class _TracingAnalyzer(_vader.SentimentIntensityAnalyzer):  # type: ignore[misc]
    """VADER's analyzer with its own lexicon dict, reporting the per-token valences it computed.

    Only the driver loop of `polarity_scores` is repeated here, to keep the `sentiments` list
    and to run it per sentence; every rule is VADER's own method.
    """

    def __init__(
        self,
        lexicon: dict[str, float],
        emojis: dict[str, str],
        neutral: frozenset[str],
        topics: frozenset[str],
    ) -> None:
        # No super().__init__(): it would re-read VADER's files from disk for every Scorer.
        self.lexicon = lexicon
        self.emojis = emojis
        self.neutral = neutral  # words made neutral on purpose: never split into scoring parts
        self.topics = topics  # the domain lexicon's tokens: see _asks
        # (sentence, ALL-CAPS differential) -> what `_sentence` read, while `Scorer.sharing()`
        self.memo: dict[tuple[str, bool], _SentenceRead] | None = None
        self._remembered = lru_cache(maxsize=SENTENCES_REMEMBERED)(self._read_sentence)

    def trace(self, sentences: Sequence[str]) -> _Trace:
        """VADER over a text already split into sentences (see `_SENTENCE_END`)."""
        sentences = [
            self._describe_emojis(s) if not s.isascii() else s  # skip VADER's per-char loop
            for s in sentences
        ]
        text = " ".join(sentences).strip()
        # ALL-CAPS emphasis is judged on the whole text, as VADER does.
        cap_diff = _vader.allcap_differential(text.split())
        tokens: list[str] = []
        all_lowered: list[str] = []
        shown: list[str] = []
        sentiments: list[float] = []
        first: list[int] = []
        but_at: dict[int, int] = {}
        asked: list[int] = []
        starts: list[int] = []
        memo = self.memo
        for sentence in sentences:
            starts.append(len(tokens))
            read = memo.get((sentence, cap_diff)) if memo is not None else None
            if read is None:
                read = self._sentence(sentence, cap_diff)
                if memo is not None:
                    memo[(sentence, cap_diff)] = read
            words, lowered, written, own, but, asked_here = read
            if not words:
                continue
            start = len(tokens)
            shown += written
            if but is not None:
                but_at[start] = start + but
            asked += [start + i for i in asked_here]
            tokens += words
            all_lowered += lowered
            sentiments += own
            first += [start] * len(words)
        polarity = self.score_valence(sentiments, text)
        emphasis = self._punctuation_emphasis(text) if sentiments else 0.0
        return _Trace(
            polarity,
            tokens,
            all_lowered,
            shown,
            sentiments,
            first,
            but_at,
            asked,
            emphasis,
            cap_diff,
            starts,
        )

    def _sentence(self, sentence: str, cap_diff: bool) -> _SentenceRead:
        """VADER over one sentence: its tokens, as written, and their valences."""
        return self._remembered(sentence, cap_diff)

    def _read_sentence(self, sentence: str, cap_diff: bool) -> _SentenceRead:
        # VADER's SentiText tokens (its _strip_punc_if_word, inlined: it runs for every word),
        # built without recounting capitals for every sentence.
        words = [t if len(t := w.strip(_PUNCTUATION)) > 2 else w for w in sentence.split()]
        if not words:
            return (), (), (), (), None, ()
        if "-" in sentence:
            words = self._split_compounds(words)
        lowered = [w.lower() for w in words]
        written = tuple(words)
        if not _DEGREE_WORDS.isdisjoint(lowered):
            words = self._degree_words(words, lowered)
        sentitext = _vader.SentiText.__new__(_vader.SentiText)
        sentitext.text = sentence
        sentitext.words_and_emoticons = words
        sentitext.is_cap_diff = cap_diff
        # VADER's driver loop. Its sentiment_valence gives 0 to a word outside the lexicon
        # without looking further, so it is called only for the (few) words in it; it only
        # ever appends to the list it is given, so each call gets its own.
        own: list[float] = [0.0] * len(words)
        last = len(words) - 1
        lexicon = self.lexicon
        for i in [i for i, word in enumerate(lowered) if word in lexicon]:
            word = lowered[i]
            if word in _vader.BOOSTER_DICT or (
                word == "kind" and i < last and lowered[i + 1] == "of"
            ):
                continue
            own[i] = self.sentiment_valence(0, sentitext, words[i], i, [])[0]
        but = None
        if "but" in lowered:
            own = self._but_check(words, own)
            but = lowered.index("but")
        asked: list[int] = []
        if self.topics and _asks(sentence):
            for i, word in enumerate(lowered):
                if own[i] and word in self.topics:
                    own[i] = 0.0
                    asked.append(i)
        return tuple(words), tuple(lowered), written, tuple(own), but, tuple(asked)

    def _degree_words(self, words: list[str], lowered: list[str]) -> list[str]:
        """'pretty bad', 'ridiculously fast': a degree word before a sentiment word boosts it.

        VADER scores these words by their own meaning (pretty +2.2, ridiculously -1.4), so "pretty
        bad" nets out near zero and "ridiculously fast" comes out negative. Before a word with a
        valence they are handed to VADER as its booster "very".
        """
        lexicon = self.lexicon
        words = list(words)
        for i in range(len(words) - 1):
            if lowered[i] in _DEGREE_WORDS and lexicon.get(lowered[i + 1]):
                words[i] = "VERY" if words[i].isupper() else "very"
                lowered[i] = "very"
        return words

    def _split_compounds(self, words: list[str]) -> list[str]:
        """'best-documented' -> 'best', 'documented' where VADER knows no such compound.

        Customers coin compounds freely; a known first or second half carries the sentiment.
        """
        out: list[str] = []
        for word in words:
            lowered = word.lower()
            if "-" in lowered and lowered not in self.lexicon and lowered not in self.neutral:
                parts = [p for p in word.split("-") if p]
                if len(parts) > 1 and any(p.lower() in self.lexicon for p in parts):
                    out += parts
                    continue
            out.append(word)
        return out

    def _describe_emojis(self, text: str) -> str:
        # VADER's polarity_scores loop, but an emoji with a valence of its own in our lexicon
        # stays itself (VADER turns 🔥 into "fire", -1.4, and 👍 into "thumbs up", 0).
        text = text.replace("\ufe0f", "")  # emoji variation selector: "❤️" is "❤"
        out = []
        prev_space = True
        for ch in text:
            if ch in self.lexicon and ch in self.emojis:
                out.append(ch if prev_space else " " + ch)
                out.append(" ")
                prev_space = True
            elif ch in self.emojis:
                if not prev_space:
                    out.append(" ")
                out.append(self.emojis[ch])
                prev_space = False
            else:
                out.append(ch)
                prev_space = ch == " "
        return "".join(out)


# --------------------------------------------------------------------------------------------
# The scorer


@dataclass(frozen=True)
class _Read:
    """A snippet as read, before it is scored toward its brand or as a whole."""

    polarity: dict[str, float]
    reading: _Reading
    explanation: tuple[dict[str, Any], ...]


class Scorer:
    """Scores snippets of customer text. Build one per configuration and reuse it: it is cheap
    to call (thousands of snippets a second) and safe to share between threads."""

    def __init__(self, config: SentimentConfig | None = None) -> None:
        self.config = config = config if config is not None else SentimentConfig()
        base = _vader_base()
        lexicon = dict(base.lexicon)
        source: dict[str, Source] = {}
        phrases: dict[str, tuple[float, Source]] = {}
        domain_digest = "off"
        domain_phrases: frozenset[str] = frozenset()
        source_valences: dict[str, float] = {}
        if config.domain_lexicon:
            domain = load_domain_lexicon()
            domain_digest = domain.digest
            domain_phrases = frozenset(domain.phrases)
            _apply_words(lexicon, source, domain.words, "domain")
            source_valences.update(domain.words)
            phrases.update((p, (v, "domain")) for p, v in domain.phrases.items())
        _apply_words(lexicon, source, config.lexicon, "user")
        source_valences.update(config.lexicon)
        phrases.update((p, (v, "user")) for p, v in config.phrases.items())

        # Each phrase becomes one placeholder token; one with valence 0 is simply not in the
        # lexicon, so it counts as a neutral word.
        self._phrase_token: dict[str, str] = {}
        self._token_phrase: dict[str, tuple[str, Source]] = {}
        for n, (phrase, (valence, src)) in enumerate(sorted(phrases.items())):
            token = _PHRASE_PLACEHOLDER.format(n)
            self._phrase_token[phrase] = token
            # Explanations show the masked brand as "<brand>": "is <brand> down".
            self._token_phrase[token] = (phrase.replace(BRAND_PLACEHOLDER, "<brand>"), src)
            if valence:
                lexicon[token] = valence
        # The user's phrases are matched first, so where they overlap ours, theirs win. Ours are
        # one regex compiled once per process; the user's are few and compile in no time.
        self._phrase_res = [
            pattern
            for pattern in (
                _compile_cached(frozenset(config.phrases)),
                _compile_cached(domain_phrases),
            )
            if pattern is not None
        ]
        self._source = source
        self._lexicon = lexicon
        neutral = frozenset(w for w, v in source_valences.items() if not v)
        topics = (
            (
                frozenset(w for w, src in source.items() if src == "domain")
                | frozenset(
                    token for token, (_, src) in self._token_phrase.items() if src == "domain"
                )
                | _ASKED_ABOUT
            )
            if config.domain_lexicon
            else frozenset()
        )
        self._analyzer = _TracingAnalyzer(lexicon, base.emojis, neutral, topics)
        self._substituted: dict[str, str] | None = None  # sentence -> phrases found, in `sharing`
        self._cues: dict[str, _SentenceCues] | None = None  # sentence -> what it says, likewise
        self._phrases_found = lru_cache(maxsize=SENTENCES_REMEMBERED)(self._find_phrases)
        self.lexicon_version = _version(config, domain_digest)
        log.debug(
            "scorer %s: %d words, %d phrases", self.lexicon_version, len(lexicon), len(phrases)
        )

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """Score several snippets of one text (the item, each brand it names): within this
        block, a sentence met again is read once (its phrases found, VADER's rules run), and
        only what differs (masking, focus, the sum) is worked out per snippet. Same scores."""
        if self._substituted is not None:  # already inside: the outer block owns the memo
            yield
            return
        self._substituted, self._cues, self._analyzer.memo = {}, {}, {}
        try:
            yield
        finally:
            self._substituted = self._cues = self._analyzer.memo = None

    def label_for(self, compound: float) -> Label:
        if compound >= self.config.positive_threshold:
            return "positive"
        if compound <= self.config.negative_threshold:
            return "negative"
        return "neutral"

    def score(
        self,
        text: str,
        *,
        neutralise: Sequence[str] = (),
        others: Sequence[str] = (),
        toward: bool = True,
    ) -> Score:
        """Score one snippet toward a brand, and read what its author means toward it.

        `neutralise`: the brand's own names, masked before scoring (the brand scored toward).
        `others`: other brands' names; in a post naming both, only what is said about this
        brand counts ("moving from Hooli to Globex" is churn for Hooli, praise for Globex).
        `toward=False`: the text as a whole (an item's own score): nobody leaves or arrives.
        """
        return self._finish(self._snippet(text, neutralise, others), toward=toward)

    def score_both(self, text: str, *, neutralise: Sequence[str] = ()) -> tuple[Score, Score]:
        """`score(text, toward=True)` and `score(text, toward=False)`, read once: an item that
        names one brand from its start is scored on the same words as a whole and toward it."""
        read = self._snippet(text, neutralise, ())
        whole = replace(read, reading=replace(read.reading, cues=list(read.reading.cues)))
        return self._finish(read, toward=True), self._finish(whole, toward=False)

    def _snippet(self, text: str, neutralise: Sequence[str], others: Sequence[str]) -> _Read:
        if not text.isascii():
            text = text.translate(_QUOTES)
        masked: list[str] = []
        if neutralise:
            text = self._neutralise(text, tuple(neutralise), masked)
        if others:
            text = _mask_others(text, tuple(others))
        if _MOVING_TO_NAME.search(text):
            text = _MOVING_TO_NAME.sub(_unknown_product, text)
        sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
        lowered = [_lower(s) for s in sentences]
        if neutralise:
            keep = _focus(lowered)
            moves = _moves_away(lowered, keep) if others else {}
            sentences = [moves.get(i, sentences[i]) for i in sorted({*keep, *moves})]
            lowered = [moves.get(i, lowered[i]) for i in sorted({*keep, *moves})]
            if others:
                for i, low in enumerate(lowered):
                    if BRAND_PLACEHOLDER in low and OTHER_PLACEHOLDER in low:
                        sentences[i], lowered[i] = _focus_clauses(sentences[i], low)
        substituted = []
        memo = self._substituted
        for sentence in sentences:
            done = memo.get(sentence) if memo is not None else None
            if done is None:
                done = self._phrases_found(sentence)
                if memo is not None:
                    memo[sentence] = done
            substituted.append(done)
        trace = self._analyzer.trace(substituted)
        reading = _read(
            lowered,
            trace,
            targeted=bool(neutralise),
            memo=self._cues,
            lexicon=self._analyzer.lexicon,
            phrases=self._token_phrase,
        )
        polarity = trace.polarity
        if reading.changed:
            polarity = self._analyzer.score_valence(trace.sentiments, " ".join(substituted))
        explanation = self._explain(trace, masked)
        return _Read(polarity, reading, explanation)

    def _finish(self, read: _Read, *, toward: bool) -> Score:
        reading, polarity = read.reading, read.polarity
        if not toward:
            reading.arrival = reading.churn = False
        compound = _stance(polarity["compound"], reading)
        label = self.label_for(compound)
        intents = _intents(reading, label)
        return Score(
            compound=compound,
            pos=polarity["pos"],
            neu=polarity["neu"],
            neg=polarity["neg"],
            label=label,
            explanation=read.explanation + _explain_reading(reading, intents),
            intents=intents,
        )

    # -- steps ---------------------------------------------------------------------------------

    def _find_phrases(self, sentence: str) -> str:
        """The sentence with each phrase of the lexicon replaced by its placeholder token."""
        for pattern in self._phrase_res:
            sentence = _substitute(pattern, sentence, self._phrase_placeholder)
        return sentence

    def _neutralise(self, text: str, terms: tuple[str, ...], masked: list[str]) -> str:
        compiled = _compile_terms(terms)
        if compiled is None:
            return text
        pattern, by_key = compiled

        def mask(found: str) -> str:
            term = by_key.get(_normalise_phrase(found), found)
            # Say so only where masking changed the score: the name held a scoring word.
            if term not in masked and any(
                self._lexicon.get(w.strip(string.punctuation)) for w in found.lower().split()
            ):
                masked.append(term)
            return BRAND_PLACEHOLDER.upper() if found.isupper() else BRAND_PLACEHOLDER

        return _substitute(pattern, text, mask)

    def _phrase_placeholder(self, found: str) -> str:
        key = _normalise_phrase(found)
        token = self._phrase_token.get(key)
        if token is None:  # matched through a "#": look it up with its numbers as "#"
            key = " ".join(NUMBER_WORD if _NUMBER.fullmatch(w) else w for w in key.split())
            token = self._phrase_token.get(key)
        if token is None:  # cannot happen: the regex is built from these keys
            return found
        # Keep VADER's ALL-CAPS emphasis: "NEVER ANSWERED" shouts like "TERRIBLE" does.
        return token.upper() if found.isupper() else token

    def _explain(self, trace: _Trace, masked: list[str]) -> tuple[dict[str, Any], ...]:
        sentiments = trace.sentiments
        lowered = trace.lowered
        scored = sorted(
            ((abs(s), i) for i, s in enumerate(sentiments) if s),
            key=lambda pair: (-pair[0], pair[1]),
        )
        out: list[dict[str, Any]] = [{"rule": "neutralised", "term": term} for term in masked]
        for _, i in scored:
            out += self._explain_token(trace, lowered, i)
        total = sum(sentiments)
        for start, at in trace.but_at.items():
            if any(sentiments[i] for i in range(start, len(sentiments)) if trace.first[i] == start):
                out.append(
                    {"rule": "but", "word": trace.tokens[at], "effect": "before x0.5, after x1.5"}
                )
        if trace.asked:
            topics = sorted({self._display(lowered[i]) for i in trace.asked})
            out.append({"rule": "question", "not_scored": topics})
        if trace.emphasis and total:
            added = round(math.copysign(trace.emphasis, total), 2)
            out.append({"rule": "punctuation", "added": added})
        return tuple(out[:MAX_EXPLANATION])

    def _display(self, token: str) -> str:
        phrase = self._token_phrase.get(token)
        return phrase[0] if phrase is not None else token

    def _explain_token(self, trace: _Trace, lowered: list[str], i: int) -> list[dict[str, Any]]:
        key = lowered[i]
        valence = trace.sentiments[i]
        entry: dict[str, Any]
        phrase = self._token_phrase.get(key)
        if phrase is not None:
            name = phrase[0]
            entry = {"phrase": name, "valence": round(valence, 2), "source": phrase[1]}
        elif key.startswith(FACT_PREFIX):
            return [
                {"rule": "fact", "words": key[len(FACT_PREFIX) :], "valence": round(valence, 2)}
            ]
        else:
            name = key
            source = self._source.get(key, "vader")
            entry = {"word": key, "valence": round(valence, 2), "source": source}
        out = [entry]
        base = self._lexicon.get(key)
        if not base:  # VADER's special idioms ("the shit") set a valence of their own
            return out
        start = trace.first[i]
        but = trace.but_at.get(start)
        factor = 1.0 if but is None or i == but else (0.5 if i < but else 1.5)
        before = valence / factor
        window = range(i - 1, max(i - 4, start - 1), -1)  # VADER looks up to three words back
        if before * base < 0:
            for j in window:
                word = lowered[j]
                if word in _NEGATORS or word in ("no", "least") or "n't" in word:
                    out.append({"rule": "negation", "word": word, "applies_to": name})
                    break
        if abs(abs(before) - abs(base)) > 1e-9:
            for j in window:
                if lowered[j] in _vader.BOOSTER_DICT:
                    out.append(
                        {"rule": "booster", "word": trace.shown[j].lower(), "applies_to": name}
                    )
                    break
            if trace.cap_diff and trace.tokens[i].isupper():
                out.append({"rule": "caps", "applies_to": name})
        return out


def _apply_words(
    lexicon: dict[str, float],
    source: dict[str, Source],
    words: Mapping[str, float],
    origin: Source,
) -> None:
    for word, valence in words.items():
        if valence:
            lexicon[word] = valence
            source[word] = origin
        else:
            # Out of the lexicon rather than 0: a 0 entry would still stop VADER treating a
            # preceding "no" as a word of its own, and would still block booster look-back.
            lexicon.pop(word, None)
            source.pop(word, None)


def _version(config: SentimentConfig, domain_digest: str) -> str:
    state = {
        "rules": RULES_VERSION,
        "vader": _vader_version(),
        "domain": domain_digest,
        "lexicon": sorted(config.lexicon.items()),
        "phrases": sorted(config.phrases.items()),
        "thresholds": [config.negative_threshold, config.positive_threshold],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _vader_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaderSentiment")
    except PackageNotFoundError:  # vendored or renamed: the lexicon digest still changes
        return "unknown"


# --------------------------------------------------------------------------------------------
# `listener score`


def unscored(lang: str) -> Score:
    """The score of a text in a language the scorer does not read: no sentiment, no intents,
    compound 0 (not a confident wrong label)."""
    why = f"written in {lang!r}: sentiment and intent are read in English only"
    return Score(0.0, 0.0, 0.0, 0.0, "unscored", ({"rule": "language", "lang": lang, "why": why},))


def score_in(
    scorer: Scorer,
    text: str,
    lang: str | None,
    *,
    neutralise: Sequence[str] = (),
    others: Sequence[str] = (),
    toward: bool = True,
) -> Score:
    """`scorer.score`, when `lang` is one the scorer reads (or unknown); `unscored` otherwise."""
    if not scored(lang):
        assert lang is not None
        return unscored(lang)
    return scorer.score(text, neutralise=neutralise, others=others, toward=toward)


def score_record(
    scorer: Scorer,
    text: str,
    brand: str | None = None,
    *,
    neutralise: Sequence[str] = (),
    others: Sequence[str] = (),
    lang: str | None = None,
) -> dict[str, Any]:
    """One output line of `listener score`: the text, its brand, its language (given, else
    detected) and its score as plain JSON."""
    lang = normalise(lang) or detect(text, [*neutralise, *others])
    score = score_in(scorer, text, lang, neutralise=neutralise, others=others)
    return {
        "text": text,
        "brand": brand,
        "lang": lang,
        "label": score.label,
        "intents": list(score.intents),
        "compound": score.compound,
        "pos": score.pos,
        "neu": score.neu,
        "neg": score.neg,
        "explanation": list(score.explanation),
    }


def score_json_lines(
    scorer: Scorer,
    lines: Iterable[str],
    neutralise_for: Callable[[str | None], Sequence[str]],
    others_for: Callable[[str | None], Sequence[str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Score JSON lines `{"text": ..., "brand": ...}` (brand optional; an "id" is passed through).

    Yields one dict per non-blank line; a line that cannot be scored yields
    `{"error": ..., "line": n}` and the stream goes on.
    """
    for number, record, problem in read_objects(lines, '{"text": "...", "brand": "..."}'):
        if record is None:
            yield {"error": problem, "line": number}
            continue
        text, brand = record.get("text"), record.get("brand")
        if not isinstance(text, str):
            yield {"error": '"text" must be a string', "line": number}
            continue
        if brand is not None and not isinstance(brand, str):
            yield {"error": '"brand" must be a string or null', "line": number}
            continue
        try:
            terms = neutralise_for(brand)
        except (KeyError, ValueError) as exc:
            yield {"error": f"brand {brand!r}: {exc}", "line": number}
            continue
        others = others_for(brand) if others_for is not None and brand else ()
        lang = record.get("lang")
        out = score_record(
            scorer,
            text,
            brand,
            neutralise=terms,
            others=others,
            lang=lang if isinstance(lang, str) else None,
        )
        if "id" in record:
            out = {"id": record["id"], **out}
        yield out


def describe_intents(explanation: Sequence[Mapping[str, Any]], intent: str | None = None) -> str:
    """The words that showed each intent, for alerts: 'churn: "cancelling our <brand> seats"'."""
    parts = [
        f'{e["intent"]}: "{e["words"]}"'
        for e in explanation
        if e.get("rule") == "intent" and "words" in e and (intent is None or e["intent"] == intent)
    ]
    return ", ".join(parts)


def describe_explanation(explanation: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    """A short human line for alerts: 'never answered -2.2, crashing -2.0, "not" negates bad'."""
    phrases = {e["phrase"]: e["valence"] for e in explanation if "phrase" in e}
    quoted: set[str] = set()
    parts: list[str] = []
    for e in explanation:
        if e.get("rule") == "intent" and "words" in e and len(parts) < limit:
            words = e["words"]
            part = f'{e["intent"]}: "{words}"'
            if words in phrases:
                # The intent's words are also a scored phrase: said once, with its valence.
                part += f" {phrases[words]:+.1f}"
                quoted.add(words)
            parts.append(part)
    for entry in explanation:
        if len(parts) >= limit:
            break
        if "phrase" in entry:
            if entry["phrase"] not in quoted:
                parts.append(f'"{entry["phrase"]}" {entry["valence"]:+.1f}')
        elif "word" in entry and "rule" not in entry:
            parts.append(f"{entry['word']} {entry['valence']:+.1f}")
        elif entry.get("rule") == "negation":
            parts.append(f'"{entry["word"]}" negates {entry["applies_to"]}')
        elif entry.get("rule") == "neutralised":
            parts.append(f"{entry['term']} ignored")
        elif entry.get("rule") == "fact":
            parts.append(f"{entry['words']} {entry['valence']:+.1f}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Toward which brand, and what the author means (listener.intent)

OTHER_PLACEHOLDER = _intent.OTHER


def _mask_others(text: str, terms: tuple[str, ...]) -> str:
    """Other brands' names become `xotherx`: not scored, and not the brand scored toward."""
    compiled = _compile_terms(terms)
    if compiled is None:
        return text
    return _substitute(
        compiled[0],
        text,
        lambda found: OTHER_PLACEHOLDER.upper() if found.isupper() else OTHER_PLACEHOLDER,
    )


# "switching to Inkwell": a name the config does not know, where the author is moving to, is
# another product (capitalised, not a month, a day or a place in the app).
_MOVING_TO_NAME = re.compile(
    r"\b((?:switch|mov|migrat|port|jump|go|went)\w*\s+(?:[\w']+\s+){0,4}?(?:to|onto|over to)\s+)"
    r"([A-Z][\w.-]*[a-z][\w.-]*)"
)
_NOT_PRODUCTS = frozenset(
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Settings",
        "Preferences",
        "The",
        "A",
        "An",
        "My",
        "Our",
        "I",
        "Europe",
        "America",
        "Asia",
        "Africa",
        "London",
        "Berlin",
        "Paris",
    ]
)


def _unknown_product(found: re.Match[str]) -> str:
    name = found.group(2)
    if (
        name in _NOT_PRODUCTS
        or BRAND_PLACEHOLDER in name.lower()
        or OTHER_PLACEHOLDER in name.lower()
    ):
        return found.group()
    return found.group(1) + OTHER_PLACEHOLDER


# A sentence about the discussion itself ("Great guide, thanks.", "Your post on status pages is
# timely.") before the brand is named says nothing about the brand.
_META = re.compile(
    r"\b(?:post|article|guide|write-?up|review|comparison|thread|comment|point|video|blog|piece|"
    r"benchmark|list|section|heads-up|tutorial|answer|reply|caveat|correction|readers?)\b"
)
_CLAUSE_END = re.compile(
    r"(?<=[,;:])\s+|\s+(?=(?:but|while|whereas|although|though|meanwhile|so)\b)|\s+[-\u2013\u2014]\s+"
)


def _moves_away(lowered: list[str], keep: list[int]) -> dict[int, str]:
    """Sentences about another brand only that say the author moves to it ("I am done,
    switching to <other>"): for the brand scored toward, that move is leaving. By index, only the
    words of the move, so what the sentence says of the other brand stays the other's."""
    kept = set(keep)
    moves: dict[int, str] = {}
    for i, s in enumerate(lowered):
        if i in kept or OTHER_PLACEHOLDER not in s or BRAND_PLACEHOLDER in s:
            continue
        cue = _intent.churn_cue(s)
        if cue is not None and cue.rule == "moving elsewhere" and OTHER_PLACEHOLDER in cue.words:
            moves[i] = cue.words
    return moves


def _focus(lowered: list[str]) -> list[int]:
    """The sentences about the brand (`xbrandx`), by index.

    Opening sentences about the discussion are dropped; where other brands are named too, a
    sentence or clause belongs to the brand named last before it (a clause naming neither
    continues the one before). A text that does not name the brand is kept whole.
    """
    brand, other = BRAND_PLACEHOLDER, OTHER_PLACEHOLDER
    named = [brand in s or other in s for s in lowered]
    if not any(brand in s for s in lowered):
        return list(range(len(lowered)))
    first = named.index(True)
    keep = [i for i in range(first) if not _META.search(lowered[i])]
    owner = ""
    for i in range(first, len(lowered)):
        s = lowered[i]
        if other not in s:
            if brand in s:
                owner = brand
            if owner == brand:
                keep.append(i)
            continue
        if brand not in s:
            owner = other
            continue
        keep.append(i)  # names both: the clauses are sorted out by _focus_clauses
        owner = brand if s.rfind(brand) > s.rfind(other) else other
    return keep


def _focus_clauses(sentence: str, lowered: str) -> tuple[str, str]:
    """In a sentence naming the brand and another, the clauses about the brand."""
    brand, other = BRAND_PLACEHOLDER, OTHER_PLACEHOLDER
    cuts = [0, *(m.end() for m in _CLAUSE_END.finditer(lowered)), len(lowered)]
    parts = [(cuts[k], cuts[k + 1]) for k in range(len(cuts) - 1) if cuts[k] < cuts[k + 1]]
    owner = ""
    kept_text: list[str] = []
    kept_lower: list[str] = []
    for a, b in parts:
        piece = lowered[a:b]
        if brand in piece and other in piece:
            owner = brand if piece.rfind(brand) > piece.rfind(other) else other
            kept_text.append(sentence[a:b])
            kept_lower.append(piece)
            continue
        if brand in piece:
            owner = brand
        elif other in piece:
            owner = other
        if owner == brand:
            kept_text.append(sentence[a:b])
            kept_lower.append(piece)
    if not kept_text:
        return sentence, lowered
    return " ".join(t.strip() for t in kept_text), " ".join(t.strip() for t in kept_lower)


# Irony. Markers that say the whole post is meant the other way round:
_IRONY = re.compile(
    "[\U0001f643\U0001f644\U0001f612\U0001f921]|(?:^|\\s)/s\\b|\\byeah,? right\\b|\\bsaid no one\\b|"
    "\\bnothing says\\b|\\bslow clap\\b|\\bwhat a time to be alive\\b|\\bgalaxy brain\\b|"
    "\\bthanks for nothing\\b|\\bcool,? cool,? cool\\b|"
    "\\blove that for (?:me|us)\\b|\\bjust what (?:i|we|everyone) needed\\b|"
    "\\boh,? (?:good|great|joy|wonderful|perfect|fantastic|nice|cool)\\b|"
    "\\b(?:very|much|so) (?:smart|intelligence|innovation|wow)\\b.*\\b(?:very|much|so) \\w+\\b"
)
# Thanks and praise aimed at something bad in the same sentence ("thanks for the 4x egress
# increase", "shoutout to <brand> for the 3-day outage"), with no "but" that would make it mixed.
_GRATITUDE = re.compile(
    r"\b(?:thanks|thank you|thx|shout ?-?out|kudos|great job|good job|well done|nice work|"
    r"love (?:how|that|it when)|so glad|congrat\w*|bravo|hats off|great work|impressive)\b"
)
_GRATITUDE_NEEDS = tuple(
    [
        "than",
        "thx",
        "shout",
        "kudos",
        "job",
        "done",
        "work",
        "love",
        "glad",
        "congrat",
        "bravo",
        "hats",
        "impress",
    ]
)
_IRONY_NEEDS = (
    *["🙃", "🙄", "😒", "🤡", "/s"],
    *[
        "yeah right",
        "yeah, right",
        "said no one",
        "nothing says",
        "slow clap",
        "what a time",
        "galaxy brain",
        "thanks for nothing",
        "cool cool",
        "cool, cool",
    ],
    *[
        "love that for",
        "just what",
        "oh good",
        "oh great",
        "oh joy",
        "oh wonderful",
        "oh perfect",
        "oh fantastic",
    ],
    *[
        "oh nice",
        "oh cool",
        "oh, ",
        "very smart",
        "much intelligence",
        "so innovation",
        "much wow",
        "very wow",
    ],
)
_POLITE_NEEDS = tuple(
    ["thank", "thx", "cheers", "happy", "glad", "willing", "keen", "apolog", "sorry"]
)
# Praise that opens a sentence before the event it is about: "Brilliant, ...", "Great job <brand>,".
_PRAISE_OPENER = re.compile(
    r"^\W*(?:oh\W+|wow\W+|well\W+)?(?:great|brilliant|fantastic|amazing|wonderful|perfect|lovely|"
    r"superb|excellent|awesome|impressive|incredible|stellar|splendid|outstanding|nice|cool)"
    r"(?:\s+(?:work|job|stuff|one|move|going|effort))?(?:\s*[,!:]|\s+xbrandx\b)"
)
IRONIC_TAIL_WORDS = 5  # a sarcastic aside after a complaint: "Great service.", "Truly helpful."
_CONTRAST = re.compile(r"\b(?:but|though|although|however|except|whereas|yet|while)\b")
COMPLAINT_SENTENCE = -1.0  # a sentence whose valences sum to this or less complains
PRAISE_SENTENCE = 1.5  # one whose valences sum to this or more praises
CHURN_CEILING = -0.3  # a customer leaving reads at most this (unless it is not the brand's fault)
ARRIVAL_FLOOR = 0.3  # a customer arriving reads at least this


@dataclass
class _Reading:
    cues: list[_intent.Cue] = field(default_factory=list)
    churn: bool = False
    arrival: bool = False
    no_fault: bool = False
    question: bool = False
    request: bool = False
    praise_sentence: bool = False
    complaint_sentence: bool = False
    vader_negative: bool = False  # before churn and arrival set the stance
    irony: list[str] = field(default_factory=list)
    changed: bool = False
    staff: str = ""  # the words that show the author speaks for the brand


# What a (lower-cased) sentence says whatever its snippet: asks, request cue, seeks information,
# stated fact, arrival cue, churn cue, a question only.
_SentenceCues = tuple[
    bool,
    "_intent.Cue | None",
    bool,
    "tuple[str, float] | None",
    "_intent.Cue | None",
    "_intent.Cue | None",
    bool,
]


# What most sentences say: no question, no request, no fact, no arrival, no churn.
_SAYS_NOTHING: _SentenceCues = (False, None, False, None, None, None, False)


@lru_cache(maxsize=SENTENCES_REMEMBERED)
def _sentence_cues(s: str) -> _SentenceCues:
    asks = _intent.asks(s)
    seeks = asks and _intent.seeks_information(s)
    request = _intent.request_cue(s)
    return (
        asks,
        request,
        seeks,
        None if seeks else _fact(s),
        _intent.arrival_cue(s),
        _intent.churn_cue(s),
        asks and request is not None and _intent.is_question_only(s),
    )


def _read(
    lowered: list[str],
    trace: _Trace,
    *,
    targeted: bool,
    memo: dict[str, _SentenceCues] | None = None,
    lexicon: Mapping[str, float] | None = None,
    phrases: Mapping[str, tuple[str, str]] | None = None,
) -> _Reading:
    """Sentence roles, intents, irony and stated facts; adjusts `trace.sentiments` in place.
    `memo`: what each sentence says, shared by the snippets of one text (`Scorer.sharing`)."""
    r = _Reading()
    sent = trace.sentiments
    bounds = [*trace.starts, len(sent)]
    full = " ".join(lowered)
    marker = _IRONY.search(full) if _intent.has_any(full, _IRONY_NEEDS) else None
    flipped: set[int] = set()
    k = -1

    def flip(a: int, b: int, why: str) -> None:
        if any(sent[i] > 0 for i in range(a, b)):
            for i in range(a, b):
                if sent[i] > 0:
                    sent[i] = -sent[i]
            flipped.add(k)
            r.irony.append(why)
            r.changed = True

    def quiet(a: int, b: int, keep: float) -> None:
        for i in range(a, b):
            if sent[i] and abs(sent[i]) < keep:
                sent[i] = 0.0
                r.changed = True

    ironic = marker is not None
    if marker:
        flip(0, len(sent), marker.group().strip())
    elif targeted and lexicon is not None and ('"' in full or " '" in full or "\u201c" in full):
        scare, quieted = _quoted(trace, full, lexicon)
        r.changed = r.changed or quieted
        if scare:
            # A claim in scare quotes ('the new "simplified" pricing'): the post's praise is
            # meant the other way round.
            flip(0, len(sent), f'"{scare}"')
            ironic = True
    facts: list[tuple[int, str, float]] = []
    if ironic and marker is None:
        facts.append((0, f"{FACT_PREFIX}scare quotes: {_shown(_clip(scare or '', 40))}", -1.5))
    asking_post = asked_info = False
    after_complaint = False  # the sentence before complains, with nothing good or mixed in it
    if memo is None:
        read = [_sentence_cues(s) for s in lowered]
    else:
        read = [memo[s] if s in memo else memo.setdefault(s, _sentence_cues(s)) for s in lowered]
    roles = [(c[0], c[1]) for c in read]
    # Courtesy closing a question or a request ("Thanks!", "happy to test") is not praise.
    courteous = any(asks or request is not None for asks, request in roles)
    for k, s in enumerate(lowered):
        a, b = bounds[k], bounds[k + 1]
        if read[k] == _SAYS_NOTHING and not any(sent[a:b]):
            # Most sentences of a long post: no valence and no cue. Every rule below only
            # moves valences that are there, or acts on a cue, so none can change it.
            after_complaint = False
            continue
        if _resolved(trace, a, b):
            r.changed = True
        asks, request = roles[k]
        if targeted and lexicon is not None and _absent_bad(trace, a, b, s, lexicon, phrases):
            r.changed = True  # "not a single unplanned outage", "zero late deliveries"
        if targeted and announces(s):
            # News about the brand (hiring, earnings, a release, a new site): its upbeat words
            # are the news's, not the author's stance. Bad news keeps its weight.
            for i in range(a, b):
                if 0 < sent[i] < ANNOUNCEMENT_KEEPS:
                    sent[i] = 0.0
                    r.changed = True
        stated = read[k][3]
        bad_fact = stated is not None and stated[1] < 0
        if not ironic and targeted:
            g = _GRATITUDE.search(s) if _intent.has_any(s, _GRATITUDE_NEEDS) else None
            if (
                g
                and not _CONTRAST.search(s)
                and (g.group() in _IRONIC_OPENERS or " for " in s[g.end() :])
                and (bad_fact or _bad_after(trace, a, b, g.end(), s))
            ):
                flip(a, b, g.group())
            elif (
                (opener := _PRAISE_OPENER.match(s)) is not None
                and not _CONTRAST.search(s)
                and (bad_fact or _bad_after(trace, a, b, opener.end(), s))
            ):
                # "Brilliant, <brand> left the box out in the rain": praise that opens a
                # sentence about a bad event is said the other way round.
                flip(a, b, opener.group().strip(" ,!"))
            elif (
                after_complaint
                and b - a <= IRONIC_TAIL_WORDS
                and not asks
                and request is None
                and any(sent[a:b])
                and all(v >= 0 for v in sent[a:b])
                and not _intent.first_person(s)
                and not _CONTRAST.search(s)
                and not _REVERSAL.search(s)
                and _FEELINGS.isdisjoint(trace.lowered[a:b])
            ):
                # "<brand> lost my parcel. Great service.": a few words of praise straight
                # after a plain complaint, about nothing else, are sarcasm.
                flip(a, b, s.strip())
        if (targeted and request is not None) or (
            courteous and _intent.has_any(s, _POLITE_NEEDS) and _POLITE.search(s)
        ):
            # A wish or a courtesy is not praise: "would be great", "happy to test", "thanks!"
            for i in range(a, b):
                if sent[i] > 0:
                    sent[i] = 0.0
                    r.changed = True
        if targeted and request is not None:
            # The thing asked for is described, not blamed: "shortcuts for scene breaks".
            for i in range(a, b):
                if sent[i] < 0 and abs(sent[i]) < QUESTION_CONTEXT_KEEPS:
                    sent[i] = 0.0
                    r.changed = True
        _, _, seeks, fact, arrival, churn, question_only = read[k]
        if asks and targeted and seeks:
            # Asking about the brand is not a stance toward it: only strong evaluative words
            # keep their weight there.
            quiet(a, b, QUESTION_KEEPS)
            asking_post = asked_info = True
        elif targeted and request is not None and not _intent.has_any(s, _STILL_NEEDS):
            asking_post = True  # a request's context describes the need, as a question's does
        if targeted and (asks or request is not None):
            for i in range(a, b):
                if sent[i] and trace.lowered[i] in _OPERATIONS:
                    sent[i] = 0.0
                    r.changed = True
        total = sum(sent[a:b])
        if fact is not None and fact[1] < 0 and _said_already(trace, a, b, fact[0], phrases):
            fact = None
        if fact is not None:
            facts.append((k, *fact))
            total += fact[1]
        if request is not None:
            r.request = True
            r.cues.append(request)
        if asks and (request is None or question_only):
            r.question = True
            r.cues.append(_intent.Cue("question", "asks", _clip(s)))
        if arrival is not None:
            r.arrival = True
            r.cues.append(arrival)
        if churn is not None:
            r.churn = True
            r.cues.append(churn)
        if total <= COMPLAINT_SENTENCE:
            r.complaint_sentence = True
        # Relief after leaving ("Deleted <brand>. Life is better.") is meant, not sarcasm.
        after_complaint = churn is None and _plain_complaint(trace, a, b, s)
        if total >= PRAISE_SENTENCE and k not in flipped and not asks and request is None:
            r.praise_sentence = True
    if asking_post and not ironic:
        # Around a question, the asker's own circumstances ("panic", "by mistake") are not a
        # stance toward the brand; customer-voice phrases and strong words still are. A
        # sentence of the asker's that does not name the brand ("the deadline is brutal",
        # "merging terrifies me") is circumstance however strong its words.
        about = [BRAND_PLACEHOLDER in v for v in lowered]
        for j in range(len(lowered)):
            own = (
                asked_info
                and any(about)
                and not about[j]
                and not roles[j][0]
                and _intent.first_person(lowered[j])
            )
            for i in range(bounds[j], bounds[j + 1]):
                v = sent[i]
                if not v:
                    continue
                if (own and -ASKER_CONTEXT_KEEPS < v < 0) or (
                    abs(v) < QUESTION_CONTEXT_KEEPS and not trace.lowered[i].startswith("xphr")
                ):
                    sent[i] = 0.0
                    r.changed = True
    for k, words, valence in facts:
        # A stated fact scores as one more token of its sentence, named in the explanation.
        trace.tokens.append(words)
        trace.lowered.append(words)
        trace.shown.append(words)
        trace.sentiments.append(valence)
        trace.first.append(trace.starts[k])
        r.changed = True
    if r.arrival:
        r.churn = False
        r.cues = [c for c in r.cues if c.intent != "churn"]
    if targeted and _intent.has_any(full, _STAFF_NEEDS) and (voice := _STAFF.search(full)):
        # The brand's own staff ("Priya from the <brand> team here"): their apologies,
        # announcements and thanks are the brand's voice, not a customer's stance or intent.
        for i, v in enumerate(sent):
            if v:
                sent[i] = 0.0
        return _Reading(changed=True, staff=voice.group().strip())
    r.no_fault = r.churn and _intent.no_fault(full)
    if r.no_fault:
        # Leaving without blame ("nothing wrong with it, I just don't need it"): the leaving
        # words are not a complaint about the brand.
        for i, v in enumerate(sent):
            if v < 0:
                sent[i] = 0.0
                r.changed = True
        r.complaint_sentence = False
    return r


# A post by someone who speaks for the brand: "<brand> support here", "from the <brand> product
# team", "I lead engineering at <brand>", "disclosure: I work at <brand>". Not former staff.
_STAFF = re.compile(
    r"\bxbrandx(?:'s)?\s+(?:[\w-]+\s+)?(?:team|support|staff|employee|engineer|pm|dev|developer|"
    r"founder|ceo|cto|cofounder|co-founder)\s+here\b|"
    r"\b(?:from|on|with|in)\s+the\s+xbrandx\s+(?:[\w-]+\s+){0,2}?team\b|"
    r"\b(?:i|we)\s+(?:work|lead|run|manage|head)\s+(?:[\w-]+\s+){0,2}?(?:at|for)\s+xbrandx\b|"
    r"\b(?:i'm|i am)\s+(?:the|a|an|one of the)\s+(?:[\w-]+\s+){0,2}?(?:founder|ceo|cto|pm|"
    r"product manager|engineer|developer|designer|community manager|cofounder|co-founder)\s+"
    r"(?:at|of|for)\s+xbrandx\b|\b(?:i'm|i am)\s+on\s+the\s+xbrandx\s+(?:[\w-]+\s+)?team\b|"
    r"\b(?:disclosure|disclaimer)\W+(?:i|we)\s+work\s+(?:at|for|on)\b"
)
_STAFF_NEEDS = (" here", " team", "work", "lead", "run ", "manage", "head", "founder", "ceo", "cto")


# Negation scope beyond VADER's three words, and "zero": what is absent is a bad thing, so the
# absence is good ("never had a single missing item", "not a single unplanned outage",
# "zero late deliveries"). The scope ends at punctuation, a conjunction or a clause word.
_ABSENCE = re.compile(
    r"\b(?:zero|never|not|no|none|without|n't)\b((?:\s+(?!and\b|but\b|or\b|so\b|why\b|how\b|"
    r"what\b|when\b|which\b|that\b|who\b|only\b|just\b|sure\b|idea\b|because\b|even\b|"
    r"until\b|longer\b|more\b|fix\w*\b|help\w*\b|stop\w*\b|one\s+(?:reply|answer|response)\b)"
    r"[\w'-]+){1,5})"
)
_ABSENCE_NEEDS = ("zero", "never", "not ", "no ", "none", "without", "n't")
# "couldn't have been easier", "never been better": a negated comparative is the best there is.
_BEST_YET = re.compile(
    r"\b(?:couldn't|could not|couldnt|can't|cannot|cant|never)\s+(?:have\s+)?(?:been|be|felt|"
    r"looked|worked|run|ran|gone)\s+(?:any\s+|so\s+|much\s+)?(easier|better|happier|smoother|"
    r"simpler|faster|nicer|quicker|more \w+)\b"
)


def _said_already(
    trace: _Trace, a: int, b: int, fact: str, phrases: Mapping[str, tuple[str, str]] | None
) -> bool:
    """A bad fact whose words a lexicon phrase of the sentence already scored ("keeps
    crashing"): counted once, not twice."""
    if not phrases:
        return False
    said = set(fact.split(": ", 2)[-1].strip(" .!?").split())
    for i in range(a, b):
        phrase = phrases.get(trace.lowered[i]) if trace.sentiments[i] < 0 else None
        if phrase is not None:
            words = set(phrase[0].split())
            if words <= said or said <= words:
                return True
    return False


def _absent_bad(
    trace: _Trace,
    a: int,
    b: int,
    sentence: str,
    lexicon: Mapping[str, float],
    phrases: Mapping[str, tuple[str, str]] | None = None,
) -> bool:
    if not _intent.has_any(sentence, _ABSENCE_NEEDS):
        return False
    lowered, sent = trace.lowered, trace.sentiments
    changed = False
    best = _BEST_YET.search(sentence)
    if best is not None:
        word = best.group(1).split()[-1]
        for i in range(a, b):
            if lowered[i] == word and sent[i] < 0:
                sent[i] = -sent[i]
                changed = True
    scoped: set[str] = set()
    for found in _ABSENCE.finditer(sentence):
        scoped.update(found.group(1).split())
    if not scoped:
        return changed
    for i in range(a, b):
        word = lowered[i]
        if sent[i] >= 0:
            continue
        phrase = phrases.get(word) if phrases and word.startswith("xphr") else None
        if (phrase is not None and all(w in scoped for w in phrase[0].split())) or (
            word in scoped and lexicon.get(word, 0.0) < 0
        ):
            sent[i] = -sent[i] * 0.5
            changed = True
    return changed


# Quoted words are someone else's: release notes, a support macro, a brand's claim.
_QUOTED = re.compile(
    r'["\u201c\u201d]([^"\u201c\u201d]{2,120})["\u201c\u201d]|(?<![\w])\'([a-z][\w -]{1,30}[a-z])\'(?![\w])'
)
# Claims a brand makes of a change, which scare quotes turn round.
_CLAIMS = frozenset(
    [
        "simplified",
        "improved",
        "unlimited",
        "fixed",
        "seamless",
        "smart",
        "streamlined",
        "upgraded",
        "enhanced",
        "optimized",
        "optimised",
        "faster",
        "easier",
        "better",
        "next-day",
        "same-day",
        "instant",
        "premium",
        "priority",
        "express",
        "resolved",
        "modern",
        "intuitive",
    ]
)


def _quoted(trace: _Trace, full: str, lexicon: Mapping[str, float]) -> tuple[str | None, bool]:
    """Quiet the praise words inside quotation marks (they are not the author's); return a
    scare-quoted claim (one or two words, a claim or a praise word), if the post has one."""
    scare = None
    words: set[str] = set()
    for found in _QUOTED.finditer(full):
        quote = (found.group(1) or found.group(2) or "").strip()
        parts = quote.split()
        if not parts:
            continue
        if len(parts) <= 2 and (
            any(w.strip(".,!?") in _CLAIMS or lexicon.get(w.strip(".,!?"), 0.0) > 0 for w in parts)
        ):
            scare = quote
        words.update(w.strip(".,!?;:") for w in parts)
    sent = trace.sentiments
    quieted = False
    for i, word in enumerate(trace.lowered):
        if sent[i] > 0 and word in words:
            sent[i] = 0.0
            quieted = True
    return scare, quieted


# Announcements: the brand (or "the company") does something newsworthy, told in the third
# person. Weak words in them ("new", "improved", "free") are not the author's stance.
_ANNOUNCES = re.compile(
    r"^(?:\W*(?:xbrandx|the company|the bank|the firm)\b(?:['\u2019]s)?(?:\s+[\w.-]+){0,3}?\s+"
    r"(?:is|are|will be)?\s*(?:hiring|hires|hired|reported|reports|announced|announces|acquired|"
    r"acquires|opens|opened|launches|launched|is out|are out|released|releases|sponsors|"
    r"sponsoring|expands|expanded|partners|partnered|appoints|appointed|relocates|rolls out|"
    r"unveils|unveiled|debuts)\b)"
)
_NEWS_WORDS = re.compile(
    r"\b(?:the company (?:said|announced|says)|according to|per the notice|press release|earnings|"
    r"quarterly|analyst|shareholders|#jobs|is hiring|now hiring|scheduled maintenance)\b"
)
_FIRST_PERSON_OR_FEELING = re.compile(
    r"\b(?:i|we|my|our|me|us|i'm|we're|i've|we've|love|hate|finally|thanks|thank)\b|!"
)
ANNOUNCEMENT_KEEPS = 2.6


def announces(sentence: str) -> bool:
    """The sentence is news about the brand, not the author's experience of it."""
    if _ANNOUNCES.match(sentence) is None and _NEWS_WORDS.search(sentence) is None:
        return False
    return _FIRST_PERSON_OR_FEELING.search(sentence) is None


# A request that is also a complaint: "STILL can't ...", "for years", "again".
_STILL_NEEDS = ("still", "years", "again", "ever", "seriously")
FACT_PREFIX = "fact: "


def _fact(sentence: str) -> tuple[str, float] | None:
    """A bad (or good) event stated without a feeling word: a rating, a price moving, a wait,
    a feature taken away, a plan made worse. (words shown, valence)"""
    present = {w for w in _FACT_WORDS if w in sentence}
    if not present:
        return None  # none of the words any fact needs: most sentences
    for name, pattern, valence, needs in _FACT_TRIES:
        if present.isdisjoint(needs):
            continue
        found = pattern.search(sentence)
        if found is not None and name == "waiting" and not _WAITING_FOR.search(sentence):
            continue
        if found is not None and name == "price up" and not _PRICE_WORDS.search(sentence):
            continue  # "loads increased 30%" is not a price going up
        if found is None:
            continue
        if name in _NEGATABLE and (
            _intent.negated_before(sentence, found.start()) or _NEGATED_VERB.search(found.group())
        ):
            continue  # "has never lost a file": an absence, which _absent_bad reads as praise
        if name == "rating":
            value = _rating(found)
            if value is None:
                continue
            valence = value
        elif name == "time":
            change = _duration_change(found.group())
            if not change:
                continue
            if _LONGER_IS_BETTER.search(sentence):
                change = -change
            valence = valence if change < 0 else -valence * 0.75
        elif name == "price":
            numbers = [float(n.replace(",", "")) for n in _MONEY.findall(found.group())]
            if len(numbers) < 2 or numbers[-1] == numbers[0]:
                continue
            valence = -valence if numbers[-1] > numbers[0] else valence * 0.75
        return f"{FACT_PREFIX}{name}: {_shown(found.group().strip())}", valence
    return None


_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}
_SECONDS_BY_WORD = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 604800,
    "month": 30 * 86400,
}
# Where a longer time is the good news (how long a battery, a warranty or a trial lasts), the
# change reads the other way round.
_LONGER_IS_BETTER = re.compile(
    r"\b(?:battery|batteries|lasts?|lasted|life|uptime|warranty|trial|guarantee|support window|"
    r"retention|streak|runtime)\b"
)
# A count of time units, in digits or words: "22", "2.5", "a", "three".
_COUNT = r"\d+(?:\.\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|thirty"
_SPAN_PARTS = re.compile(rf"({_COUNT})(?:\s*|-)([a-z]*)")


def _duration_change(text: str) -> float | None:
    """'from 22 minutes to 6' -> seconds after minus seconds before; None when not two times.
    A unit given once ("from 22 to 6 minutes") is shared by both numbers."""
    parts = _SPAN_PARTS.findall(text.split("from", 1)[-1])
    if len(parts) != 2:
        return None
    before, after = (_unit_seconds(u) for _, u in parts)
    first = before or after
    second = after or before
    if first is None or second is None:
        return None
    values = [_amount(n) for n, _ in parts]
    return values[1] * second - values[0] * first


def _unit_seconds(unit: str) -> int | None:
    if not unit:
        return None
    for word, seconds in _SECONDS_BY_WORD.items():
        if unit.startswith(word):
            return seconds
    return _SECONDS.get(unit.rstrip("s") if len(unit) > 1 else unit)


def _amount(number: str) -> float:
    return float(number) if number[0].isdigit() else float(_COUNT_WORDS[number])


_NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_COUNT_WORDS = {"a": 1, "an": 1, "twelve": 12, "twenty": 20, "thirty": 30, **_NUMBER_WORDS}


def _rating(found: re.Match[str]) -> float | None:
    text = found.group()
    if "\u2605" in text or "\u2b50" in text or "\u2606" in text:
        filled = text.count("\u2605") + text.count("\u2b50")
        out_of = filled + text.count("\u2606")
        out_of = max(out_of, 5)
    else:
        parts = re.findall(r"\d+|" + "|".join(_NUMBER_WORDS), text)
        if not parts:
            return None
        filled = int(parts[0]) if parts[0].isdigit() else _NUMBER_WORDS[parts[0]]
        out_of = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 5
    if not 0 < out_of <= 10 or filled > out_of:
        return None
    share = filled / out_of
    return (
        -2.5
        if share <= 0.2
        else -1.8
        if share <= 0.4
        else 0.0
        if share <= 0.6
        else 2.0
        if share < 0.9
        else 2.5
    )


_PRICE_WORDS = re.compile(
    r"\b(?:pric\w*|premiums?|fees?|bills?|billed|rates?|costs?|subscriptions?|plans?|tariffs?|"
    r"debits?|charg\w*|renewal|membership)\b"
)
_MONEY = re.compile(r"(?<=[$\u00a3\u20ac])\s?(\d[\d,]*(?:\.\d+)?)")
_WAITING_FOR = re.compile(
    r"\b(?:ticket|support|repl(?:y|ied)|respon\w+|answer\w*|wait\w*|restor\w*|refund\w*|"
    r"ship\w*|deliver\w*|pending|hold|still|outage|down|without|no|awaiting|stuck|order)\b"
)
_WHEN = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|spring|summer|autumn|fall|winter|"
    r"christmas|easter|(?:last\s+)?(?:week|month|year)|\d{4})"
)
_SPAN = (
    rf"(?:{_COUNT})"
    r"(?:\s*|-)(?:(?:seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|weeks?|months?)\b)?"
)
_FACTS: tuple[tuple[str, re.Pattern[str], float], ...] = tuple(
    (name, re.compile(pattern), valence)
    for name, pattern, valence in (
        (
            "rating",
            r"[\u2605\u2b50\u2606]{3,10}|\b\d{1,2}\s?/\s?(?:5|10)\b(?![./]\d)|"
            r"\b(?:\d|one|two|three|four|five) stars?\b",
            0.0,
        ),
        (
            "price",
            r"[$\u00a3\u20ac]\s?\d[\d,]*(?:\.\d+)?(?:\s*(?:\u2192|->|to)\s*[$\u00a3\u20ac]\s?\d[\d,]*(?:\.\d+)?)+",
            2.0,
        ),
        (
            "worse now",
            r"\bnow\s+(?:\w+\s+){0,2}?(?:charges?|costs?|requires?|needs?|has an? (?:limit|cap|fee|ad)|"
            r"shows? an?|an? subscription|a \$|only|minimum|locked|behind|paywalled|\$|\u00a3|\u20ac)",
            -1.5,
        ),
        (
            "worse than before",
            r"\b(?:used to (?:be|have|include|get|come)|until last (?:week|month|year)|"
            r"(?:was|were|it's been|used to be) (?:free|included)\b|no longer (?:free|included|available|supported|works?))",
            -1.3,
        ),
        (
            "taken away",
            r"\b(?:removed|discontinu\w+|deprecat\w+|sunsett?\w*|paywall\w*|took away|takes away|"
            r"kill(?:ed|ing) off|moved\s+(?:[\w-]+\s+){1,3}?(?:to|behind)\s+(?:the\s+|a\s+)?(?:[\w-]+\s+)?(?:plan|tier|paywall|subscription))\b",
            -1.5,
        ),
        (
            "waiting",
            r"\b(?:for|took|takes|taking|after|waited|waiting|been|in)\s+(?:over\s+|nearly\s+|almost\s+|about\s+|another\s+)?"
            r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|several|many)\s+(?:days?|weeks?|months?)\b|\bday \d+ of\b|\bawaiting\b",
            -1.5,
        ),
        (
            "price up",
            r"\b(?:rais(?:e|es|ed|ing)|increas(?:e|es|ed|ing)|hik(?:e|es|ed|ing)|put up|went up|"
            r"gone up|goes up|jump(?:s|ed)?|doubl(?:e|es|ed)|tripl(?:e|es|ed))\b[^.?!]{0,40}?"
            r"\d+(?:\.\d+)?\s?%|\b(?:prices?|premiums?|fees?|bills?|rates?|tariffs?|direct debits?)"
            r"\s+(?:\w+\s+){0,2}?(?:went up|has gone up|have gone up|increased|rose|doubled|tripled)\b",
            -1.5,
        ),
        (
            "closing",
            r"\bclos(?:es|ing|ed)\s+(?:its|their|the|our|my)\s+(?:last\s+|local\s+|only\s+|nearest\s+)?"
            r"(?:[\w-]+\s+)?(?:branch|branches|office|offices|store|stores|shop|site|location|"
            r"counter|depot)\b",
            -1.5,
        ),
        (
            "capped",
            r"\b(?:caps?|capped|capping|throttl\w+)\s+(?:[\w-]+\s+){0,3}?(?:at|to)\s+\d",
            -1.2,
        ),
        (
            "promise not kept",
            r"\bthat was\s+(?:over\s+|nearly\s+|almost\s+)?(?:\d+|two|three|four|five|six|seven|"
            r"eight|nine|ten|several)\s+(?:days?|weeks?|months?)\s+ago\b|"
            r"\b(?:promised|guaranteed)\b[^.?!]*\b(?:never|didn't|hasn't|haven't|yet to|instead)\b|"
            # "That was in October.": said after what was promised, the date says it did not come
            rf"^\W*that was\s+(?:back\s+)?(?:in\s+|on\s+|last\s+)?{_WHEN}\W*$",
            -1.5,
        ),
        (
            # The brand destroys or loses what is the customer's: "wiped every note", "lost our
            # order", "reset his progress". Not when the author does it ("I deleted my ...").
            "lost or destroyed",
            r"(?<!\bi )(?<!\bwe )(?<!\bto )(?<!\bi've )(?<!\bwe've )(?<!\byou )\b"
            r"(?:lost|loses|lose|wiped|wipes|wipe|erased|erases|erase|deleted|deletes|delete|reset|"
            r"resets|corrupted|corrupts|corrupt|overwrote|overwrites|overwrite|scrambled|mangled|"
            r"bricked|nuked|broke|breaks|ate)\s+"
            r"(?:(?:all|every|each|half|most|some)\s+(?:of\s+)?)?(?:my|our|his|her|their|the|"
            r"everyone's|years|months|weeks|\d+)\b",
            -1.8,
        ),
        (
            # Still not done: a wait, a fix or a refund that has not come ("still hasn't refunded").
            "still not",
            r"\bstill\s+(?:hasn't|haven't|has not|have not|hasnt|havent|isn't|isnt|is not|aren't|"
            r"wasn't|doesn't|doesnt|don't|didn't|won't|wont|can't|cant|cannot|not)\b",
            -1.5,
        ),
        (
            # The brand takes something back: "cut the interest", "shrank the portions", "no
            # longer lets you ...". Cutting a price, a wait or a bill is good news, not this.
            "cut back",
            r"\b(?:xbrandx|they|the company|the bank|the app)\b(?:['\u2019]s)?[^.?!,;]{0,30}?\b"
            r"(?:cut|cuts|slashed|slashes|halved|halves|shrank|shrunk|shrinks|reduced|reduces|"
            r"lowered|downgraded|axed|scrapped|pulled|dropped|disabled|restricted|limited|"
            r"stopped (?:offering|supporting|allowing|including|selling)|got rid of|"
            r"no longer (?:offers?|supports?|includes?|lets?|allows?|has|comes? with))\s+"
            r"(?!(?:the\s+|their\s+|its\s+|our\s+|my\s+|your\s+)?(?:[\w-]+\s+)?"
            r"(?:price|prices|pricing|costs?|bills?|fees?|wait|waits|waiting|latency|load|noise|"
            r"spam|ads|bloat|steps|clicks|size|errors?|bugs?|downtime|queues?|times?|"
            r"emissions|carbon|delays?)\b)",
            -1.5,
        ),
        (
            # A charge or a limit put on: "added a £1.99 service fee", "introduced ads".
            "added a charge",
            r"\b(?:add(?:s|ed|ing)?|introduc(?:es|ed|ing)|slapp(?:ed|ing)|tack(?:s|ed|ing) on|"
            r"start(?:s|ed|ing) charging|now charg(?:es|ing))\s+(?:on\s+)?"
            r"(?:(?:a|an|another|new|extra|the)\s+)?(?:[\w\u00a3$\u20ac.'-]+\s+){0,3}?"
            r"(?:fee|fees|charge|charges|surcharge|levy|paywall|ads|adverts)\b",
            -1.5,
        ),
        (
            # A change made behind the customer's back: "quietly moved", "without notice",
            # "with two weeks notice", "I found out from my bank".
            "without notice",
            r"\bquietly\s+(?!\w+ly\b)\w+|\bwithout\s+(?:any\s+)?(?:telling|notice|notifying|"
            r"warning|asking|informing|an? (?:email|heads-up|announcement|word))\b|"
            r"\bwith\s+(?:only\s+|just\s+|barely\s+)?(?:a|one|two|three|four|\d+)\s+"
            r"(?:days?|weeks?)(?:'s?|')?\s+notice\b|\bno\s+(?:prior\s+)?(?:notice|warning|"
            r"heads-up|announcement)\b|\bfound out (?:from|when|via|through|on|by)\b",
            -1.3,
        ),
        (
            # The same failure again: "Again.", "for the third time", "keeps logging me out".
            "again",
            r"^\W*(?:and\s+)?(?:again|yet again|once again|again and again)\W*$|"
            r"\bfor the\s+(?:second|third|fourth|fifth|sixth|nth|\d+(?:st|nd|rd|th))\s+time\b|"
            r"\b(?:second|third|fourth|fifth|sixth|\d+(?:st|nd|rd|th))\s+(?:\w+\s+)?"
            r"(?:in a row|running)\b|\b(?:keeps?|kept)\s+(?:on\s+)?(?!working\b|improving\b|"
            r"getting\s+better\b|impressing\b|delivering\b|growing\b|surprising\b)\w+ing\b",
            -1.2,
        ),
        (
            # A time that went from one length to another: shorter is better ("builds went from
            # 22 minutes to 6"), longer is worse ("delivery went from 2 days to 2 weeks").
            "time",
            rf"\bfrom\s+{_SPAN}\s+(?:down\s+|up\s+)?to\s+{_SPAN}",
            2.0,
        ),
    )
)


_NEGATED_VERB = re.compile(r"\b(?:not|never|hasn't|hasnt|haven't|didn't|didnt|doesn't|won't)\b")
_NEGATABLE = frozenset(["lost or destroyed", "cut back", "added a charge", "again"])
_FACT_NEEDS: tuple[tuple[str, ...], ...] = (
    ("\u2605", "\u2b50", "\u2606", "/", "star"),
    ("$", "\u00a3", "\u20ac"),
    ("now",),
    ("used to", "until last", "free", "included", "no longer"),
    (
        "remov",
        "discontinu",
        "deprecat",
        "sunset",
        "paywall",
        "took away",
        "takes away",
        "kill",
        "moved",
    ),
    ("day", "week", "month", "awaiting"),
    ("%", "went up", "gone up", "increased", "rose", "doubled", "tripled"),
    ("clos",),
    ("cap", "throttl"),
    ("ago", "promised", "guaranteed", "that was"),
    (
        *["lost", "loses", "wipe", "erase", "delete", "reset", "corrupt", "overwr"],
        *["scrambled", "mangled", "bricked", "nuked", "broke", "ate "],
    ),
    ("still",),
    (
        *["cut", "slashe", "halve", "shr", "reduce", "lowered", "downgraded", "axed", "scrapped"],
        *["pulled", "dropped", "disabled", "restricted", "limited", "stopped", "got rid"],
        "no longer",
    ),
    ("fee", "charge", "surcharge", "levy", "paywall", "ads", "advert"),
    ("quietly", "without", "notice", "no warning", "heads-up", "announcement", "found out"),
    ("again", "time", "in a row", "running", "keep", "kept"),
    ("from ",),
)
# Each needed word is looked up once per sentence, not once per fact that needs it.
_FACT_TRIES = tuple(
    (name, pattern, valence, frozenset(needs))
    for (name, pattern, valence), needs in zip(_FACTS, _FACT_NEEDS, strict=True)
)
_FACT_WORDS = tuple(sorted({w for ws in _FACT_NEEDS for w in ws}))
QUESTION_KEEPS = 3.0
QUESTION_CONTEXT_KEEPS = 2.5
ASKER_CONTEXT_KEEPS = 3.5
# What technical questions and requests do to things, not feelings: "how do I kill a volume?"
_OPERATIONS = frozenset(
    [
        "kill",
        "kills",
        "killing",
        "stop",
        "stopping",
        "delete",
        "deleting",
        "remove",
        "removing",
        "fight",
        "block",
        "blocking",
        "force",
        "ignore",
        "ignored",
        "quit",
        "destroy",
        "exclude",
        "exclusion",
        "exclusions",
        "excluded",
        "drop",
        "dropping",
        "reject",
        "rejected",
        "deny",
        "denied",
        "abort",
        "kill-switch",
        "panic",
        "worst-case",
    ]
)
_IRONIC_OPENERS = frozenset(
    [
        "love how",
        "love that",
        "love it when",
        "so glad",
        "great job",
        "good job",
        "well done",
        "nice work",
        "great work",
    ]
)  # in a question asking for information, valences weaker than this are quiet
_POLITE = re.compile(
    r"^\W*(?:thanks|thank you|thx|cheers|ty|tia)\b[^.!?]{0,25}[.!?]*\W*$|"
    r"\bthanks (?:in advance|for (?:considering|reading|any|your time|looking|the help|listening))|"
    r"\b(?:happy|glad|willing|keen) to (?:help|share|test|contribute|provide|open|send|try|answer|"
    r"explain|give|hop)|\bapologies if\b|\bsorry if\b"
)
# "fixed the report export bug", "resolved my issue": a problem solved is told as a good story.
_RESOLVING = frozenset(
    [
        "fixed",
        "fixes",
        "fix",
        "resolved",
        "resolves",
        "solved",
        "solves",
        "patched",
        "sorted",
        "addressed",
        "prevented",
        "avoided",
        "eliminated",
        "stopped",
        "caught",
        "squashed",
    ]
)


def _resolved(trace: _Trace, a: int, b: int) -> bool:
    sent, lowered = trace.sentiments, trace.lowered
    changed = False
    for i in range(a, b):
        if sent[i] < 0 and any(lowered[j] in _RESOLVING for j in range(max(a, i - 4), i)):
            sent[i] = -sent[i] * 0.5
            changed = True
    return changed


# Words that name the author's own feeling: after a problem story ("... it was all in within
# the hour. Impressed.") they are meant; the sarcastic aside evaluates the brand instead.
_FEELINGS = frozenset(
    "impressed amazed grateful thankful relieved happy delighted chuffed glad pleased stoked"  # noqa: SIM905
    " thrilled blown".split()
)
# The story turns: "turns out it's excellent", "luckily ...": what follows is meant.
_REVERSAL = re.compile(
    r"\b(?:turns? out|turned out|actually|in the end|luckily|thankfully|fortunately|silver lining)"
)
_SUBORDINATE = frozenset(
    "when after before during since once until while because whenever".split()  # noqa: SIM905
)


def _plain_complaint(trace: _Trace, a: int, b: int, sentence: str) -> bool:
    """The sentence complains in words of its own, about nothing else: nothing good in it, no
    contrast, no fix, and the bad words are not a circumstance ("the same day our boiler
    failed", "after the storm")."""
    sent, lowered = trace.sentiments, trace.lowered
    if sum(v for v in sent[a:b] if v < 0) > COMPLAINT_SENTENCE or any(v > 0 for v in sent[a:b]):
        return False
    if _CONTRAST.search(sentence) or not _RESOLVING.isdisjoint(lowered[a:b]):
        return False
    first_bad = next(i for i in range(a, b) if sent[i] < 0)
    return _SUBORDINATE.isdisjoint(lowered[a:first_bad])


def _bad_after(trace: _Trace, a: int, b: int, at: int, sentence: str) -> bool:
    """Something bad follows the thanks in its sentence: "thanks for the 3-day outage"."""
    words_before = len(sentence[:at].split())
    return any(trace.sentiments[i] <= -0.5 for i in range(a + words_before, b))


def _clip(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _stance(compound: float, reading: _Reading) -> float:
    reading.vader_negative = compound < 0
    if reading.arrival:
        return max(compound, ARRIVAL_FLOOR)
    if reading.churn and not reading.no_fault:
        return min(compound, CHURN_CEILING)
    return compound


def _intents(reading: _Reading, label: Label) -> tuple[str, ...]:
    if reading.staff:
        return ()
    found = set()
    if reading.churn:
        found.add("churn")
    if (label == "negative" and (reading.vader_negative or not reading.churn)) or (
        reading.complaint_sentence
    ):
        found.add("complaint")
    if reading.request:
        found.add("request")
    if reading.question:
        found.add("question")
    if reading.arrival or label == "positive" or reading.praise_sentence:
        found.add("praise")
    return tuple(i for i in _intent.INTENTS if i in found)


def _shown(words: str) -> str:
    return words.replace(BRAND_PLACEHOLDER, "<brand>").replace(OTHER_PLACEHOLDER, "<other>")


def _explain_reading(reading: _Reading, intents: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out: list[dict[str, Any]] = []
    for why in reading.irony[:2]:
        out.append(
            {
                "rule": "irony",
                "words": _shown(_clip(why, 60)),
                "effect": "praise read as its opposite",
            }
        )
    seen = set()
    for cue in reading.cues:
        intent = "praise" if cue.intent == "arrival" else cue.intent
        if intent in intents and intent not in seen:
            seen.add(intent)
            out.append(
                {"rule": "intent", "intent": intent, "cue": cue.rule, "words": _shown(cue.words)}
            )
    if reading.staff:
        out.append({"rule": "brand's own voice", "words": _shown(_clip(reading.staff, 60))})
    if reading.churn and reading.no_fault:
        out.append(
            {
                "rule": "intent",
                "intent": "churn",
                "cue": "not the brand's fault",
                "effect": "not negative",
            }
        )
    return tuple(out)
