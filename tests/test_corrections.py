"""A user's corrections and lexicon changes: `listener label`, `rescore` and `score`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from helpers import rss, write_config

from listener.cli import cli


def mentions(tmp_path: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(tmp_path / "mentions.db")
    try:
        return {
            title: (mid, label, auto, override, nr, expl)
            for mid, title, label, auto, override, nr, expl in conn.execute(
                "SELECT id, title, label, auto_label, label_override, not_relevant, explanation "
                "FROM mentions"
            )
        }
    finally:
        conn.close()


def setup(tmp_path: Path, httpd) -> Path:
    httpd.add(
        "/f",
        rss(
            [
                {
                    "title": "Ticket",
                    "link": "https://f.example/1",
                    "guid": "1",
                    "body": "Acme support never answered and the app keeps crashing.",
                },
                {
                    "title": "Migration",
                    "link": "https://f.example/2",
                    "guid": "2",
                    "body": "We tried Acme over the weekend.",  # neutral ("migrated to Acme" reads as praise)
                },
                {
                    "title": "Hold",
                    "link": "https://f.example/3",
                    "guid": "3",
                    "body": "Acme put me through the blender queue again.",
                },
            ]
        ),
    )
    cfg = write_config(tmp_path, [("f", httpd.url("/f"))])
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 0, result.output
    return cfg


def test_label_correction_sticks_and_explanations_are_stored(tmp_path, httpd):
    cfg = setup(tmp_path, httpd)
    before = mentions(tmp_path)
    mid, label, auto, override, _nr, expl = before["Ticket"]
    assert label == auto == "negative" and override is None
    words = {e.get("phrase") or e.get("word") for e in json.loads(expl)}
    assert words & {"never answered", "crashing", "keeps crashing"}

    migration_id = before["Migration"][0]
    result = CliRunner().invoke(cli, ["-c", str(cfg), "label", str(migration_id), "positive"])
    assert result.exit_code == 0 and "positive (scorer said neutral)" in result.output
    after = mentions(tmp_path)["Migration"]
    assert after[1] == "positive" and after[2] == "neutral" and after[3] == "positive"

    result = CliRunner().invoke(cli, ["-c", str(cfg), "label", str(mid), "--not-relevant"])
    assert result.exit_code == 0 and "not relevant" in result.output
    stats = CliRunner().invoke(cli, ["-c", str(cfg), "stats"])
    assert "negative" not in stats.output.split("by label:")[1]  # the only negative is out

    missing = CliRunner().invoke(cli, ["-c", str(cfg), "label", "9999", "negative"])
    assert missing.exit_code == 1 and "no mention with id 9999" in missing.output


def test_rescore_after_a_lexicon_change_reports_changes_and_keeps_corrections(tmp_path, httpd):
    cfg = setup(tmp_path, httpd)
    before = mentions(tmp_path)
    assert before["Hold"][1] == "neutral"
    CliRunner().invoke(cli, ["-c", str(cfg), "label", str(before["Migration"][0]), "negative"])

    # The team's own word for their support queue, and a correction that must survive.
    cfg.write_text(
        cfg.read_text()
        + "sentiment:\n  phrases:\n    blender queue: -2.5\n  lexicon:\n    tried: 2.0\n"
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "rescore"])
    assert result.exit_code == 0, result.output
    assert "rescored 3 mentions: 1 labels changed" in result.output
    assert "neutral -> negative: 1" in result.output
    after = mentions(tmp_path)
    assert after["Hold"][1] == "negative"
    assert after["Migration"][1] == "negative" and after["Migration"][2] == "positive"

    again = CliRunner().invoke(cli, ["-c", str(cfg), "rescore"])
    assert "rescored 0 mentions" in again.output  # nothing is stale any more


def test_score_arguments_and_json_lines(tmp_path, monkeypatch):
    # No config at all: `score` still works, with the default scorer.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTENER_CONFIG", raising=False)
    runner = CliRunner()
    out = runner.invoke(cli, ["score", "outage again, I requested a refund"])
    assert out.exit_code == 0, out.output
    line = json.loads(out.output)
    assert line["label"] == "negative" and line["compound"] < 0 and line["explanation"]

    stdin = "\n".join(
        [
            json.dumps({"text": "Vandelay Pay works", "brand": "Vandelay Pay"}),
            "not json",
            json.dumps({"text": "no problems at all with it"}),
        ]
    )
    out = runner.invoke(cli, ["score"], input=stdin)
    lines = [json.loads(x) for x in out.output.splitlines()]
    assert out.exit_code == 1  # one line was bad, and said so
    assert lines[0]["label"] in {"neutral", "positive"} and lines[0]["brand"] == "Vandelay Pay"
    assert "error" in lines[1] and lines[1]["line"] == 2
    assert lines[2]["label"] != "negative"
