"""Every file of feedparser's own test corpus, served over loopback, goes through one poll.

The corpus (../shared/data/feeds/feedparser, 2,107 well-formed, ill-formed and oddly encoded
feeds) is not part of this repository: the test skips when it is absent.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from httpd import LoopbackServer

from listener.config import load_config
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeds" / "feedparser"
HEADER_RE = re.compile(rb"^Header:\s*([A-Za-z-]+):\s*(.+?)\s*$", re.M)


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and not p.name.startswith("LICENSE"))


@pytest.mark.skipif(
    not CORPUS.is_dir(), reason="../shared/data/feeds/feedparser is not beside the repo"
)
def test_whole_feedparser_corpus_polls_without_stopping(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    files = corpus_files()
    assert len(files) > 2000
    lines = []
    for i, path in enumerate(files):
        body = path.read_bytes()
        headers = {
            k.decode().lower(): v.decode("latin-1") for k, v in HEADER_RE.findall(body[:2000])
        }
        content_type = headers.pop("content-type", "application/xml")
        httpd.add(f"/f/{i}", body, content_type=content_type, headers=headers)
        lines.append(f"  - name: f{i}\n    url: {httpd.url(f'/f/{i}')}\n")
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "brands:\n  - name: Example\n    terms: [Example, feed]\n"
        "fetch:\n  retries: 0\n  concurrency: 16\n  per_host: 16\n"
        "sources:\n" + "".join(lines)
    )
    config = load_config(cfg, env={})

    async def main() -> PollSummary:
        async with open_runtime(config) as rt:
            return await poll_sources(list(config.sources), rt)

    summary = asyncio.run(main())
    assert len(summary.reports) == len(files)
    crashed = [r for r in summary.reports if r.error and r.error.startswith("internal error")]
    assert not crashed, crashed[:5]
    # Nearly all of them are feeds with entries; the rest fail as sources, with a reason.
    assert summary.ok >= 0.95 * len(files), [r.error for r in summary.reports if r.error][:20]
    assert all(r.error for r in summary.reports if not r.ok)
    # Most corpus files test feed-level elements and have no entries; many entries share links
    # such as http://example.com/, and those are one item each.
    assert summary.items > 500 and summary.new_items > 400
