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
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from itertools import product
from types import MappingProxyType
from typing import Any

from vaderSentiment import vaderSentiment as _vader  # type: ignore[import-untyped]

from listener.models import Label, Score

log = logging.getLogger(__name__)

# Bump when the scoring rules in this module change, so stored scores are known to be stale.
RULES_VERSION = "1"
LEXICON_RESOURCE = "customer_voice.tsv"
MAX_EXPLANATION = 8
MAX_VALENCE = 4.0  # VADER's scale
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

    def trace(self, text: str) -> _Trace:
        if not text.isascii():  # every emoji is non-ASCII: skip VADER's per-character loop
            text = self._describe_emojis(text)
        text = text.strip()
        # ALL-CAPS emphasis is judged on the whole text, as VADER does.
        cap_diff = _vader.allcap_differential(text.split())
        tokens: list[str] = []
        all_lowered: list[str] = []
        shown: list[str] = []
        sentiments: list[float] = []
        first: list[int] = []
        but_at: dict[int, int] = {}
        asked: list[int] = []
        for sentence in _SENTENCE_END.split(text):
            # VADER's SentiText tokens (its _strip_punc_if_word, inlined: it runs for every word),
            # built without recounting capitals for every sentence.
            words = [t if len(t := w.strip(_PUNCTUATION)) > 2 else w for w in sentence.split()]
            if not words:
                continue
            if "-" in sentence:
                words = self._split_compounds(words)
            lowered = [w.lower() for w in words]
            shown += words
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
            start = len(tokens)
            if "but" in lowered:
                own = self._but_check(words, own)
                but_at[start] = start + lowered.index("but")
            if self.topics and _asks(sentence):
                for i, word in enumerate(lowered):
                    if own[i] and word in self.topics:
                        own[i] = 0.0
                        asked.append(start + i)
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
        )

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
        self.lexicon_version = _version(config, domain_digest)
        log.debug(
            "scorer %s: %d words, %d phrases", self.lexicon_version, len(lexicon), len(phrases)
        )

    def label_for(self, compound: float) -> Label:
        if compound >= self.config.positive_threshold:
            return "positive"
        if compound <= self.config.negative_threshold:
            return "negative"
        return "neutral"

    def score(self, text: str, *, neutralise: Sequence[str] = ()) -> Score:
        """Score one snippet. `neutralise`: brand and product terms to mask before scoring."""
        if not text.isascii():
            text = text.translate(_QUOTES)
        masked: list[str] = []
        if neutralise:
            text = self._neutralise(text, tuple(neutralise), masked)
        for pattern in self._phrase_res:
            text = _substitute(pattern, text, self._phrase_placeholder)
        trace = self._analyzer.trace(text)
        polarity = trace.polarity
        compound = polarity["compound"]
        return Score(
            compound=compound,
            pos=polarity["pos"],
            neu=polarity["neu"],
            neg=polarity["neg"],
            label=self.label_for(compound),
            explanation=self._explain(trace, masked),
        )

    # -- steps ---------------------------------------------------------------------------------

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


def lexicon_version(config: SentimentConfig) -> str:
    """What `Scorer(config).lexicon_version` will be, without building the scorer."""
    if not config.domain_lexicon:
        return _version(config, "off")
    data = (resources.files("listener") / "sentiment_lexicon" / LEXICON_RESOURCE).read_bytes()
    return _version(config, hashlib.sha256(data).hexdigest()[:16])


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


def score_record(
    scorer: Scorer, text: str, brand: str | None = None, *, neutralise: Sequence[str] = ()
) -> dict[str, Any]:
    """One output line of `listener score`: the text, its brand and its score as plain JSON."""
    score = scorer.score(text, neutralise=neutralise)
    return {
        "text": text,
        "brand": brand,
        "label": score.label,
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
) -> Iterator[dict[str, Any]]:
    """Score JSON lines `{"text": ..., "brand": ...}` (brand optional; an "id" is passed through).

    Yields one dict per non-blank line; a line that cannot be scored yields
    `{"error": ..., "line": n}` and the stream goes on.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield {"error": f"not JSON: {exc.msg} at column {exc.colno}", "line": number}
            continue
        if not isinstance(record, dict):
            yield {
                "error": 'expected an object like {"text": "...", "brand": "..."}',
                "line": number,
            }
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
        out = score_record(scorer, text, brand, neutralise=terms)
        if "id" in record:
            out = {"id": record["id"], **out}
        yield out


def describe_explanation(explanation: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    """A short human line for alerts: 'never answered -2.2, crashing -2.0, "not" negates bad'."""
    parts: list[str] = []
    for entry in explanation:
        if "phrase" in entry:
            parts.append(f'"{entry["phrase"]}" {entry["valence"]:+.1f}')
        elif "word" in entry and "rule" not in entry:
            parts.append(f"{entry['word']} {entry['valence']:+.1f}")
        elif entry.get("rule") == "negation":
            parts.append(f'"{entry["word"]}" negates {entry["applies_to"]}')
        elif entry.get("rule") == "neutralised":
            parts.append(f"{entry['term']} ignored")
        if len(parts) == limit:
            break
    return ", ".join(parts)
