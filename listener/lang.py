"""Which language an item is written in, and whether the scorer reads it.

The language a source gives (Mastodon's `language`, Bluesky's `langs`) is used as given. Otherwise
it is detected with py3langid (a Naive Bayes model over byte n-grams, 97 languages, shipped in the
package: nothing is fetched at run time; ~160 µs a short post; bench/lang_detect.py compares it
with lingua, langdetect, CLD2 and fastText). Detection runs only where it is needed: on items
that name a brand (before scoring) and where a `lang:` query asks.

Texts with fewer than MIN_LETTERS letters or MIN_WORDS words (links, @handles and the brand's
own names aside: "Vandelay Pay works" is one word of English) are not detected: the language is
unknown (None) and the text is scored as before, since a wrong guess on "Acme down??" would cost
an alert. Where English is plausible (ENGLISH_AT of the probability, or half the winner's) but
another language wins, the item counts as English for the same reason: a customer's English
complaint misread as Pidgin must still be scored.

Sentiment and intent are claimed only for SCORED_LANGUAGES; the rest are stored `unscored`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from .models import Item

log = logging.getLogger(__name__)

SCORED_LANGUAGES = frozenset({"en"})
MIN_LETTERS = 15
MIN_WORDS = 3
ENGLISH_AT = 0.25
# Detection reads the head of a text: a post's language is set in its first lines.
DETECT_CHARS = 600

# Words only English has among the languages people write to brands in (checked against the
# Germanic and Romance ones: Dutch "we"/"is", German "was"/"an", French "on" and Portuguese "as"
# are left out). A text where they are ENGLISH_WORDS_SHARE of the words is English without asking
# the model, which costs ~0.5 ms a long post and ~100 MB in every process that loads it: most
# posts a listener reads are English.
# fmt: off
_ENGLISH_WORDS = frozenset({
    "the", "and", "of", "to", "that", "this", "with", "for", "it", "you", "my", "your", "have",
    "has", "but", "not", "are", "be", "they", "our", "just", "been", "what", "from", "about",
    "would", "there", "their", "which", "when", "were", "will", "can", "said", "after", "into",
    "than", "then", "its", "also", "only", "some", "more", "out", "up", "because", "how", "who",
    "why", "had", "him", "his", "she", "them", "these", "those", "other", "could", "should",
    "being", "does", "did",
})
# fmt: on
ENGLISH_WORDS_SHARE = 0.15
ENGLISH_WORDS_AT_LEAST = 4

_NOISE = re.compile(r"\S*://\S*|www\.\S+|[@#]\w[\w.@-]*")
_WORD = re.compile(r"[^\W\d_]{2,}")


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    log.debug("loading the language model")
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def normalise(tag: object) -> str | None:
    """A source's language tag as stored: "pt-BR" -> "pt-br", "en_US" -> "en-us"."""
    if not isinstance(tag, str):
        return None
    tag = tag.strip().casefold().replace("_", "-")
    return tag or None


def detect(text: str, ignore: Sequence[str] = ()) -> str | None:
    """The language `text` is written in (an ISO 639-1 code where there is one), or None when the
    text is too short to tell. `ignore`: names (a brand's terms) that belong to no language."""
    text = _NOISE.sub(" ", text[:DETECT_CHARS])
    if ignore:
        text = _names_re(tuple(sorted(set(ignore), key=len, reverse=True))).sub(" ", text)
    words = _WORD.findall(text)
    if len(words) < MIN_WORDS or sum(map(len, words)) < MIN_LETTERS:
        return None
    if _plainly_english(words):
        return "en"
    ranked = _identifier().rank(text)
    best, top = ranked[0]
    if best != "en" and any(
        lang == "en" and (p >= ENGLISH_AT or p >= top / 2) for lang, p in ranked[:3]
    ):
        return "en"
    return str(best)


def _plainly_english(words: Sequence[str]) -> bool:
    english = sum(1 for w in words if w.lower() in _ENGLISH_WORDS)
    return english >= ENGLISH_WORDS_AT_LEAST and english >= ENGLISH_WORDS_SHARE * len(words)


def source_language(item: Item) -> str | None:
    """The language the source gave for the item, if any."""
    extra = item.extra
    tag = extra.get("lang") or extra.get("language")
    if not tag and extra.get("langs"):
        tag = extra["langs"][0]
    return normalise(tag)


def item_language(item: Item, text: str | None = None, ignore: Sequence[str] = ()) -> str | None:
    """The source's language for the item, else the detected one (over `text`, by default its
    title and text, without the names in `ignore`)."""
    given = source_language(item)
    if given:
        return given
    if text is None:
        text = f"{item.title}\n{item.text}" if item.title else item.text
    return detect(text, ignore)


@functools.lru_cache(maxsize=256)
def _names_re(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in names if n), re.IGNORECASE)


def scored(lang: str | None) -> bool:
    """Whether sentiment and intent are claimed for text in `lang` (unknown: yes, as before)."""
    return lang is None or lang.split("-", 1)[0] in SCORED_LANGUAGES
