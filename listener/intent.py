"""What a customer means toward a brand: churn, complaint, request, question, praise.

Rules over sentences, not a model: each sentence of a post gets a role (it asks, it requests a
change, it says the author is leaving or arriving), read from general English mechanisms:

- **churn**: a verb of leaving whose object is the brand ("cancelled my <brand> subscription",
  "moving our infra off <brand>"), a verb of moving whose destination is another product ("switched
  to <other>", "going back to my old app"), a negated verb of staying ("not renewing", "won't
  extend"), asking for alternatives, a refund demanded or the product sent back, "done with
  <brand>". A negation in front ("I'm not switching") cancels it.
- **arrival**: the same verbs with the brand as destination ("moved from <other> to <brand>",
  "we went with <brand>"): the brand is what the author chose, so it reads as praise.
- **question**: a sentence that asks (a question mark, or an opening like "how do I"), minus
  rhetorical forms ("how else was I supposed to...", "why is there still no...").
- **request**: asking for a change ("please add", "would be great if", "could you support",
  "any plans to", "feature request", an imperative "Add ..." opening a sentence or a title).

Complaint and praise come from the sentiment of the sentences about the brand and are decided
in `listener.sentiment`, which also uses churn and arrival to set the sentiment toward the brand.

Works on text where the brand's own names are masked as `xbrandx` and other brands' names as
`xotherx` (see `Scorer.score`). Each finding keeps the words that showed it, for explanations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Most important first: the order of `Score.intents`.
INTENTS = ("churn", "complaint", "request", "question", "praise")

BRAND = "xbrandx"
OTHER = "xotherx"


@dataclass(frozen=True)
class Cue:
    """One reason for an intent: which rule fired and the words it fired on."""

    intent: str  # one of INTENTS, or "arrival" (the brand is where the author moves to)
    rule: str
    words: str


def _alt(words: str) -> str:
    return "(?:" + "|".join(words.split()) + ")"


# -- vocabulary: word classes, not phrases ---------------------------------------------------

_FIRST_PERSON = re.compile(
    r"\b(?:i|we|my|our|us|me|i'm|we're|i've|we've|i'll|we'll|i'd|we'd|im|ive)\b"
)
_NEGATION = re.compile(
    r"\b(?:not|never|no|don't|dont|won't|wont|didn't|didnt|isn't|aren't|wasn't|can't|cannot|"
    r"no longer|no plans to|without)\s+(?:\w+\s+){0,2}$"
)
# Verbs of moving: what moves is the author's work, the direction decides churn or arrival.
_MOVE = (
    r"(?:mov(?:e|es|ed|ing)|migrat(?:e|es|ed|ing|ion)|switch(?:es|ed|ing)?|port(?:s|ed|ing)?|"
    r"transferr?(?:s|ed|ing)?|shift(?:s|ed|ing)?|jump(?:s|ed|ing)?|"
    r"(?:go|goes|going|went|gone|get|got|getting|take|taking|took|bring|brought) (?:\w+ ){0,2}?"
    r"(?=off|out of|away)|defect(?:s|ed|ing)?)"
)
_AWAY = r"(?:off(?: of)?|away from|out of|from)"
_TOWARD = r"(?:to|onto|into|over to|for)"
# Filler between a preposition and the brand: "off <brand>", "off the studio's <brand> Drive"
_FILL = r"(?:(?!to\b|into\b|onto\b|for\b|xotherx|and\b)[\w'$.-]+\s+){0,3}?"
_YOU = r"(?:xbrandx|your (?:platform|service|product|app|cloud|network|company))"
# Verbs whose object is what the author leaves.
_LEAVE = (
    r"(?:cancel(?:s|l?ed|l?ing)?|leav(?:e|es|ing)|left|quit(?:s|ting)?|ditch(?:es|ed|ing)?|"
    r"dump(?:s|ed|ing)?|drop(?:s|ped|ping)?|abandon(?:s|ed|ing)?|uninstall(?:s|ed|ing)?|"
    r"clos(?:e|es|ed|ing)|terminat(?:e|es|ed|ing)|unsubscrib(?:e|es|ed|ing)|"
    r"downgrad(?:e|es|ed|ing)|churn(?:s|ed|ing)?|offboard(?:s|ed|ing)?|"
    r"wind(?:s|ing)? down|wound down|phas(?:e|es|ed|ing) out|sunsett?(?:s|ed|ing)?|"
    r"retir(?:e|es|ed|ing))"
)
_HOLDING = (
    r"(?:subscription|account|plan|seats?|contract|membership|license|licence|renewal|service|"
    r"commit(?:ment)?|tenancy|workspace)s?"
)
_STAY = (
    r"(?:renew(?:s|ed|ing|al)?|extend(?:s|ed|ing)?|stay(?:s|ed|ing)?|continu(?:e|es|ed|ing)|"
    r"re-?up|come back|coming back|be back|sign(?:ing)? up again|keep(?:ing)? (?:paying|using)|"
    r"sign(?:ing)?\s+(?:the\s+|a\s+|our\s+|another\s+)?(?:renewal|contract|extension))"
)
_PRODUCTS = (
    r"(?:providers?|apps?|tools?|services?|carriers?|banks?|processors?|platforms?|clouds?|"
    r"suppliers?|vendors?|isps?|clients?|options|products?|solutions?|competitors?|hosts?|"
    r"companies|company|networks?|software|systems?)"
)
_ELSEWHERE = (
    r"(?:another|a different|a competing|a rival|a competitor|some other|other|a new|the local|"
    r"a (?:paid|free|cheaper|local|smaller|better)|my old|our old|the old)"
)

_CHURN_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (rule, re.compile(pattern))
    for rule, pattern in (
        ("moving away", rf"\b{_MOVE}\b[^.?!]{{0,60}}?\b{_AWAY}\s+{_FILL}{_YOU}"),
        (
            "leaving",
            rf"\b{_LEAVE}\s+(?:(?:my|our|the|all|of|team's|whole)\s+|\d+\s+)*{_FILL}{_YOU}",
        ),
        (
            "leaving",
            rf"\b{_LEAVE}\s+(?:(?:my|our|the|all|of|whole|family's)\s+|\d+\s+)+"
            rf"(?:[\w'-]+\s+){{0,2}}?{_HOLDING}\b",
        ),
        ("leaving", r"\b(?:cancellation|termination)\s+(?:confirmed|fee|request|submitted)"),
        ("leaving", rf"\b{_HOLDING}\W+(?:cancel(?:l?ed)|terminated|closed)\b"),
        (
            "not staying",
            rf"\b(?:not|n't|never|no longer|won't|wont|no)\s+(?:\w+\s+){{0,2}}?{_STAY}\b",
        ),
        (
            "not staying",
            r"\b(?:kill(?:s|ed|ing)?|scrap(?:s|ped|ping)?|end(?:s|ed|ing)?)\s+(?:\w+\s+){0,3}?renewal",
        ),
        (
            "moving elsewhere",
            rf"\b{_MOVE}\b[^.?!]{{0,50}}?\b{_TOWARD}\s+(?:{OTHER}|{_ELSEWHERE}\s+(?:\w+\s+){{0,2}}?{_PRODUCTS}\b)",
        ),
        ("moving elsewhere", rf"\b{_MOVE}\s+(?:\w+\s+){{0,3}}?elsewhere\b"),
        (
            "moving elsewhere",
            r"\b(?:going|gone|go|went|moving|moved|switching|switched)\s+back\s+to\b",
        ),
        ("moving elsewhere", rf"\b(?:switch(?:es|ed|ing)?|chang(?:e|ed|ing))\s+{_PRODUCTS}\b"),
        (
            "alternatives",
            rf"\b(?:alternatives?|replacements?)\s+(?:to|for)\s+{_FILL}{_YOU}|"
            rf"{_YOU}(?:\s+\w+){{0,2}}\s+(?:alternatives?|replacements?)\b|"
            rf"\b(?:looking|searching|shopping)\s+(?:around\s+)?(?:for|at)\s+(?:\w+\s+){{0,2}}?"
            rf"(?:alternatives?|replacements?|other\s+{_PRODUCTS})\b|"
            rf"\b(?:evaluat\w+|consider\w*|test\w*|trial\w*)\s+(?:\w+\s+){{0,1}}?"
            rf"(?:alternatives?|other\s+{_PRODUCTS}|competitors?)\b|"
            rf"\bany\s+(?:good\s+|decent\s+)?(?:alternatives?|replacements?)\b|"
            rf"\b(?:looking|searching|shopping)\s+(?:around\s+)?for\b[^.?!]{{0,40}}?"
            rf"\b(?:that|which|who)\s+(?:isn't|is not|aren't|are not)\s+{_YOU}|"
            rf"\b(?:booked|went|gone|going|signed up|bought|ordered|chose|picked|flying|flew)\s+"
            rf"(?:with\s+|for\s+|to\s+)?(?:a different|a competing|a rival|some other)\s+[\w-]+",
        ),
        (
            "done with",
            rf"\b(?:done|finished|fed up)\s+(?:\w+ing\s+(?:with\s+)?|with\s+){_FILL}{_YOU}|"
            rf"\bthrough\s+with\s+{_FILL}{_YOU}",
        ),
        (
            "done with",
            r"\b(?:we're|we are|i'm|i am|were|im)\s+(?:so\s+)?(?:done|out|gone|outta here)\b",
        ),
        (
            "done with",
            rf"\b(?:last (?:day|week|month) (?:on|with)|goodbye|farewell|bye)\s+{_FILL}{_YOU}",
        ),
        (
            "refund or gone",
            r"\b(?:take|taking|took|want|wanted|requested|request|demand\w*|asked for)\s+(?:a\s+|the\s+|my\s+|our\s+|full\s+)*refund",
        ),
        (
            "not staying",
            rf"\b(?:never|won't|wont|will not|not going to|no more|last time (?:i|we)(?:'ll)?)\s+"
            r"(?:be\s+|ever\s+)?(?:us(?:e|ing)|buy(?:ing)?|order(?:ing)?|fly(?:ing)?|shop(?:ping)?|"
            r"book(?:ing)?|pay(?:ing)?|recommend(?:ing)?|trust(?:ing)?|bank(?:ing)?)\b"
            r"(?:(?!\b(?:else|but|other|than|after|besides|without|instead)\b)[^.?!]){0,30}?"
            rf"(?:{BRAND}|\bagain\b)|{BRAND}\s+(?:won't|will not|will never)\s+(?:see|get)\s+"
            r"(?:another|one more|a single)\s+(?:cent|penny|dime|pound|dollar)",
        ),
        (
            "moving elsewhere",
            r"\b(?:business|money|custom|look(?:ing)?|shop(?:ping)?|go(?:ing)?)\s+elsewhere\b|"
            r"\b(?:gave|giving|give|handed in|hand in)\s+(?:xbrandx\s+)?(?:our|my|their)?\s*notice\b|"
            r"\bwant(?:s|ed)?\s+out\s+of\b",
        ),
        (
            "lost a customer",
            r"\b(?:lost|losing|lose)\s+(?:a|another|one|this|a loyal)\s+(?:customer|client|subscriber|"
            r"user|member)\b|\b(?:you've|you have|xbrandx has|xbrandx just|just|officially)\s+lost\s+"
            r"(?:me|us|my business|our business)\b|\blost (?:my|our) business\b|"
            rf"{BRAND}\s+is\s+(?:dead to (?:me|us)|history to (?:me|us))\b",
        ),
        (
            "alternatives",
            rf"(?:^|\b(?:i|we|i'm|we're|i've|we've|i'll|we'll|to|are|am|is|will be)\s+(?:\w+\s+)?)"
            rf"replac(?:e|ed|ing)\s+{_FILL}{BRAND}\b|"
            rf"\b(?:something|anything|one|options?|tools?|apps?)\s+other than\s+{_FILL}{BRAND}|"
            rf"\b(?:find|finding|found|need)\s+(?:a\s+|an\s+)?(?:new|different|another|better)\s+"
            rf"(?:[\w-]+\s+)?{_PRODUCTS}\b(?![^?]*\?)",
        ),
        (
            "done with",
            r"\b(?:i'm|we're|i am|we are|i'll be|we'll be)\s+(?:so\s+)?leaving"
            r"(?!\s+(?:for|on|at|to|the|a|my|our|work|home|feedback|comments?|reviews?)\b)",
        ),
        (
            "refund or gone",
            rf"\b(?:return(?:ed|ing)?|sen[dt](?:ing)? back)\s+(?:the|my|our|it|{BRAND})\b"
            rf"|{BRAND}(?:\s+[\w#-]+){{0,2}}\s+(?:returned|went back)\b",
        ),
        (
            # Leaving told as an idiom of going: "walking away from", "moving on from",
            # "jumping ship", "time to switch", "shopping around", the app deleted.
            "leaving",
            rf"\b(?:walk(?:s|ed|ing)?\s+away\s+from|mov(?:e|es|ed|ing)\s+on\s+from|"
            rf"bail(?:s|ed|ing)?\s+on)\s+{_FILL}{_YOU}|\bjump(?:s|ed|ing)?\s+ship\b|"
            r"\btime\s+(?:to|for)\s+(?:me\s+|us\s+)?(?:to\s+)?(?:switch|move on|leave|cancel|go|"
            r"jump ship|shop around|look elsewhere|find (?:a|an|another|something))\b|"
            r"\bshop(?:s|ped|ping)?\s+around\b|"
            rf"\b(?:deleted|uninstalled|removed)\s+(?:the\s+)?{BRAND}(?:\s+app)?\s*(?:[.!,;]|$|from\b)",
        ),
        (
            # The end of a term said outright: "this is our last month", "my final week with".
            "done with",
            r"\b(?:this is|it's|that's|this was|will be|was)\s+(?:my|our)\s+(?:very\s+)?"
            r"(?:last|final)\s+(?:day|week|month|year|billing cycle|term|season)\b|"
            r"\b(?:my|our)\s+(?:last|final)\s+(?:day|week|month|year)\s+(?:with|on|at|as)\b",
        ),
        (
            # An ultimatum: "... or I'm gone", "if <brand> doesn't fix this, we're leaving".
            "refund or gone",
            r"\bor\s+(?:else\s+)?(?:i'm|we're|i'll|we'll|i am|we are|i will|we will)\s+"
            r"(?:be\s+)?(?:leaving|cancel\w*|switch\w*|gone|out|done|off|taking)\b|"
            r"\bif\b[^.?!]{0,80}\b(?:doesn't|don't|can't|won't|isn't|aren't|not)\b[^.?!]{0,80}?"
            r"\b(?:i'm|we're|i'll|we'll|i am|we are|i will|we will)\s+(?:be\s+|definitely\s+|"
            r"seriously\s+)?(?:leaving|cancel\w*|switch\w*|gone|out|done|taking|looking|shopping)\b",
        ),
    )
)
_ARRIVAL_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (rule, re.compile(pattern))
    for rule, pattern in (
        ("moving to", rf"\b{_MOVE}\b[^.?!]{{0,60}}?\b{_TOWARD}\s+{_FILL}{BRAND}"),
        ("moving to", rf"\b{_LEAVE}\s+[^.?!]{{0,40}}?\bfor\s+{_FILL}{BRAND}"),
        (
            "chose",
            rf"\b(?:went|go|going|gone|sticking|stuck)\s+with\s+{_FILL}{BRAND}|"
            rf"\b(?:picked|chose|chosen|choosing|signed up (?:for|with)|joined|adopted|settled on)"
            rf"\s+{_FILL}{BRAND}",
        ),
    )
)
# Words one of which a sentence must hold for the rule (same order) to be tried: a cheap test
# that keeps most sentences away from most patterns.
_CHURN_NEEDS: tuple[tuple[str, ...], ...] = (
    ("xbrandx", "your "),
    ("xbrandx", "your "),
    (
        "subscription",
        "account",
        "plan",
        "seat",
        "contract",
        "membership",
        "licen",
        "renewal",
        "service",
        "commit",
        "tenancy",
        "workspace",
    ),
    ("cancellation", "termination"),
    ("cancel", "terminated", "closed"),
    ("renew", "extend", "stay", "continu", "re-up", "reup", "back", "sign", "keep"),
    ("renewal",),
    (
        "xotherx",
        "another",
        "different",
        "competing",
        "rival",
        "competitor",
        "other",
        "new",
        "local",
        "paid",
        "free",
        "cheaper",
        "smaller",
        "better",
        "old",
    ),
    ("elsewhere",),
    ("back to",),
    ("switch", "chang"),
    (
        "alternativ",
        "replacement",
        "other",
        "competitor",
        "isn't",
        "is not",
        "aren't",
        "differ",
        "rival",
        "competing",
    ),
    ("xbrandx", "your "),
    ("done", "out", "gone"),
    ("xbrandx", "your "),
    ("refund",),
    ("never", "won't", "wont", "will not", "not going", "no more", "last time", "xbrandx won"),
    ("elsewhere", "notice", "want out", "wants out", "wanted out"),
    ("lost", "losing", "lose", "dead to", "history to"),
    ("replac", "other than", "new", "different", "another", "better"),
    ("leaving",),
    ("return", "back"),
    ("away", "move on", "moving on", "moved on", "bail", "ship", "time ", "around", "xbrandx"),
    ("last", "final"),
    ("or ", "if "),
)
assert len(_CHURN_NEEDS) == len(_CHURN_RULES)


def has_any(text: str, words: tuple[str, ...]) -> bool:
    """Does `text` hold one of `words` (substrings)? Cheaper than a regex alternation."""
    for word in words:  # noqa: SIM110 (a loop: faster than any() over a generator)
        if word in text:
            return True
    return False


_CHURN_TRIES = tuple(
    (rule, pattern, frozenset(needs))
    for (rule, pattern), needs in zip(_CHURN_RULES, _CHURN_NEEDS, strict=True)
)
# Every word some churn rule needs, once: a sentence's words are looked up once, not per rule.
_CHURN_WORDS = tuple(sorted({w for ws in _CHURN_NEEDS for w in ws}))

# Every word some churn rule needs, in one pattern: one C-speed scan rules most sentences out.
_CHURN_ANY = re.compile("|".join(sorted({re.escape(w) for ws in _CHURN_NEEDS for w in ws})))

# It is not the brand's fault: churn without blame ("nothing wrong with it, I just don't need it").
_NO_FAULT = re.compile(
    r"\b(?:nothing wrong|no complaints?|not (?:their|its|your|xbrandx's) fault|"
    r"(?:just|simply) (?:don't|do not|no longer) need)\b"
)

# -- questions --------------------------------------------------------------------------------

_OPENERS = re.compile(
    r"(?:how (?:do|can|should|would|to)|is there|are there|any (?:way|tips|idea|ideas|advice|"
    r"recommendations?|suggestions?)|does anyone|anyone know|has anyone)\b"
)
_RHETORICAL = re.compile(
    r"\b(?:how else|do (?:you|they) though|who (?:thought|decided|approved)|"
    r"why would (?:anyone|i|you|we)|what could (?:possibly )?go wrong|are you (?:kidding|serious)|"
    r"is this a joke|how hard (?:is|can) it|still (?:no|not)\b)"
)

# -- requests ---------------------------------------------------------------------------------

_CHANGE = (
    r"(?:add|adding|support|include|expose|allow|enable|let|make|provide|offer|bring(?: back)?|"
    r"give|implement|remember|restore|reconsider|consider|fix|tell|answer|put back|ship|build|"
    r"integrate|sync|show|keep)"
)
_REQUEST_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (rule, re.compile(pattern))
    for rule, pattern in (
        (
            "asks for a feature",
            r"\b(?:feature request|small request|one request|request:|my (?:one |only )?wish|only wish|wish ?list)",
        ),
        ("please", rf"\bplease\W+(?:[\w']+\W+){{0,5}}?{_CHANGE}\b"),
        (
            "would be good",
            r"\b(?:would|could|it'd|that'd|i'd|we'd)\s+(?:\w+\s+){0,2}?(?:be\s+(?:so\s+|really\s+|very\s+)?"
            r"(?:great|nice|useful|helpful|awesome|amazing|good|handy|lovely|ideal|cool)|"
            r"love|like|appreciate|unblock|let us|help)\b|"
            r"\bwould\s+make\s+(?:[\w-]+\s+){1,4}?(?:easier|simpler|better|practical|possible|faster)\b",
        ),
        (
            "could you",
            r"\b(?:could|can|will|would)\s+(?!i\b)(?:[\w'-]+\s+){1,3}?(?:please\s+)?"
            r"(?:add|include|support|remember|expose|offer|allow|provide|bring|consider|implement|get an?)\b",
        ),
        (
            "any plans",
            rf"\b(?:any plans?|plans?|planning|roadmap)\s+(?:to|for|on)\s+(?:\w+\s+){{0,1}}?{_CHANGE}\b|on the roadmap\b",
        ),
        (
            "should",
            r"\b(?:needs? to|should|ought to|have to)\s+(?:really\s+|just\s+|finally\s+)?(?:add|let|support|offer|allow|expose|provide|bring back|give us)\b|\b(?:need|want) a way to\b|\bthere (?:should|needs to) be\b",
        ),
        (
            "any chance",
            r"\bany chance (?:of|you|we|to|that)\b|\b(?:happily|gladly) pay for\b|\bwish (?:it|they|you|there|xbrandx)\s+(?:had|would|could|let|offered|supported)\b",
        ),
    )
)
_REQUEST_NEEDS: tuple[tuple[str, ...], ...] = (
    ("request", "wish"),
    ("please",),
    ("would", "could", "'d"),
    ("could", "can", "will", "would"),
    ("plan", "roadmap"),
    ("need", "should", "ought", "have to", "want a way"),
    ("chance", "pay for", "wish"),
)
assert len(_REQUEST_NEEDS) == len(_REQUEST_RULES)
_REQUEST_TRIES = tuple(
    (rule, pattern, needs)
    for (rule, pattern), needs in zip(_REQUEST_RULES, _REQUEST_NEEDS, strict=True)
)
# "Add per-device usage", "Expose battery level in the SDK", "sdk-name: support scheduled messages"
_IMPERATIVE = re.compile(
    r"^(?:[\w.-]+:\s+)?(?:just\s+|please\s+)?(add|expose|allow|enable|support|bring back|let us|let me|give us|offer|provide)\b\W*(\S+)?"
)
# After "support" at the start of a sentence, words that make it the noun ("Support says ...").
_NOT_OBJECT = frozenset(
    [
        "says",
        "said",
        "told",
        "tells",
        "took",
        "takes",
        "is",
        "was",
        "are",
        "were",
        "has",
        "have",
        "had",
        "keeps",
        "kept",
        "replied",
        "replies",
        "answered",
        "answers",
        "never",
        "team",
        "rep",
        "reps",
        "chat",
        "line",
        "lines",
        "hours",
        "plan",
        "ticket",
        "tickets",
        "engineer",
        "engineers",
        "staff",
        "agent",
        "agents",
        "just",
        "still",
        "closed",
        "closes",
        "wants",
        "wanted",
        "asked",
        "asks",
        "called",
        "calls",
        "won't",
        "can't",
        "doesn't",
        "didn't",
        "got",
        "gets",
        "sent",
        "sends",
        "emailed",
        "finally",
        "eventually",
        "literally",
        "actually",
        "then",
        "and",
        "for",
        "on",
        "at",
        "via",
        "here",
        "there",
        "me",
        "response",
        "responses",
        "person",
        "desk",
        "portal",
        "forum",
        "page",
        "docs",
        "queue",
        "teams",
        "was,",
        "is,",
        "wait",
        "times",
        "time",
        "experience",
        "quality",
        "sucks",
        "rocks",
    ]
)
_ROADMAP = re.compile(
    r"\b(?:any plans?|roadmap|planning to|plan to|will (?:you|xbrandx|they) (?:ever )?(?:add|support))\b"
)


def split_roles(sentence: str) -> tuple[bool, bool]:
    """(asks, requests) for one lower-cased sentence."""
    return asks(sentence), bool(request_cue(sentence))


def asks(sentence: str) -> bool:
    """The sentence asks something: a question mark, or an opening that asks, and not rhetorical."""
    s = sentence.rstrip()
    while s and not (s[-1].isalnum() or s[-1] in "?.!,;:"):
        s = s[:-1].rstrip()
    if not s:
        return False
    if not (s.endswith("?") or _OPENERS.match(s) is not None):
        return False
    if s.startswith(("#", "**")) and s.lstrip("#* ") != s.lstrip("#"):
        return False  # a template's heading ("### What happened?"), not the author asking
    return _RHETORICAL.search(s) is None


def request_cue(sentence: str) -> Cue | None:
    if True:
        for rule, pattern, needs in _REQUEST_TRIES:
            if not has_any(sentence, needs):
                continue
            found = pattern.search(sentence)
            if found:
                return Cue("request", rule, found.group().strip())
    found = _IMPERATIVE.match(sentence)
    if (
        found
        and (found.group(2) or "").strip(".,;:!?'\"").lower() not in _NOT_OBJECT
        and found.group(2)
    ):
        return Cue("request", "asks for a change", found.group().strip())
    return None


def churn_cue(sentence: str) -> Cue | None:
    """Leaving, toward the brand: the first rule that fires and is not negated."""
    if _CHURN_ANY.search(sentence) is None:
        return None  # none of the words any churn rule needs: most sentences
    present = {w for w in _CHURN_WORDS if w in sentence}
    for rule, pattern, needs in _CHURN_TRIES:
        if present.isdisjoint(needs):
            continue
        for found in pattern.finditer(sentence):
            if rule != "not staying" and _negated(sentence, found.start()):
                continue
            if rule in ("moving elsewhere", "refund or gone", "leaving") and not _subject_is_author(
                sentence, found.start()
            ):
                continue
            if (
                rule == "leaving"
                and found.group().startswith("drop")
                and _FELL.match(sentence, found.end())
            ):
                continue  # "dropped my <brand> phone down the stairs": a fall, not a farewell
            return Cue("churn", rule, found.group().strip())
    return None


_FELL = re.compile(
    r"(?:\s+[\w'-]+){0,2}?\s+(?:down|onto|into|in the|on the|off the|off a|from|in a)\b"
)


def arrival_cue(sentence: str) -> Cue | None:
    """Arriving: the brand is where the author moves to, or what they chose."""
    if BRAND not in sentence:
        return None
    for rule, pattern in _ARRIVAL_RULES:
        for found in pattern.finditer(sentence):
            if _negated(sentence, found.start()):
                continue
            return Cue("arrival", rule, found.group().strip())
    return None


# The author supposes, not decides: "if I cancel my contract in the 14-day window, ...?"
_SUPPOSING = re.compile(r"\b(?:if|whether|once|when|in case|before)\s+(?:i|we)\s+(?:\w+\s+){0,2}$")


def negated_before(sentence: str, at: int) -> bool:
    """A negation governs the words at `at`: "has never lost my data", "didn't cut the ..."."""
    return _NEGATION.search(sentence[max(0, at - 40) : at]) is not None


def _negated(sentence: str, at: int) -> bool:
    """`negated_before`, or a supposition asked about ("if we cancel, do we ...?")."""
    return negated_before(sentence, at) or (
        "?" in sentence[at:] and _SUPPOSING.search(sentence[max(0, at - 40) : at]) is not None
    )


def _subject_is_author(sentence: str, at: int) -> bool:
    """The author does it: a first-person word in the sentence, or the verb opens it ("Switched
    carriers yesterday.", "Cancelling <brand> after two years.")."""
    if _FIRST_PERSON.search(sentence):
        return True
    before = sentence[:at].split()
    return len(before) <= 2


def first_person(sentence: str) -> bool:
    """The author speaks of themselves: I, we, my, our, me, us."""
    return _FIRST_PERSON.search(sentence) is not None


def no_fault(text: str) -> bool:
    return _NO_FAULT.search(text) is not None


def is_question_only(sentence: str) -> bool:
    """A request put as a question ("Could you add X?") is a request; "any plans to add X?" is both."""
    return _ROADMAP.search(sentence) is not None


# Asking for information, not reporting a problem in question form ("Why does it keep crashing?").
_REPORTING = re.compile(
    r"\b(?:anyone else|anybody else|just me|only one|why|again|still|keeps?|seriously|ever going to)\b"
)


def seeks_information(sentence: str) -> bool:
    return _REPORTING.search(sentence) is None
