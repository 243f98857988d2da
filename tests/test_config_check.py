"""`listener check` on a broken config: exit 2 and one located line per mistake, in plain words.

Each case is what a person would type wrong; the assertion is the exact line they read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from listener.cli import cli

BASE = """\
database: mentions.db
brands:
  - name: Acme
sources:
  - name: blog
    kind: feed
    url: https://blog.example.com/feed
    every: 15m
fetch:
  connect_timeout: 10s
  max_body: 20MB
alerts:
  channels:
    - name: slack
      kind: slack
      webhook_url: https://hooks.example.com/x
    - name: mail
      kind: email
      host: smtp.example.com
      port: 587
      from: listener@example.com
      to: [marketing@example.com]
"""


def check(tmp_path: Path, text: str) -> tuple[int, list[str], Path]:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(text)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    return result.exit_code, result.stderr.splitlines(), cfg


def edited(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def test_the_base_config_is_fine(tmp_path: Path) -> None:
    code, errors, _ = check(tmp_path, BASE)
    assert (code, errors) == (0, [])


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        # 15.2: durations are finite, sizes and intervals have floors
        (
            "every: 15m",
            "every: .inf",
            8,
            "sources[0].every: .inf is not a duration: use e.g. 30s, 15m, 1h30m, 2d",
        ),
        (
            "every: 15m",
            "every: .nan",
            8,
            "sources[0].every: .nan is not a duration: use e.g. 30s, 15m, 1h30m, 2d",
        ),
        (
            "every: 15m",
            "every: 1ms",
            8,
            "sources[0].every: 1ms is too often: a source on another machine is polled at most "
            "every 30s (every 1s when it is on 127.0.0.1)",
        ),
        (
            "    every: 15m\nfetch:",
            "every: 10s\nfetch:",
            8,
            "every: 10s is too often: a source on another machine is polled at most every 30s "
            "(every 1s when it is on 127.0.0.1)",
        ),
        (
            "connect_timeout: 10s",
            "connect_timeout: .inf",
            10,
            "fetch.connect_timeout: .inf is not a duration: use e.g. 30s, 15m, 1h30m, 2d",
        ),
        (
            "connect_timeout: 10s",
            "connect_timeout: 1h",
            10,
            "fetch.connect_timeout: 1h is too long: at most 5m",
        ),
        (
            "max_body: 20MB",
            "max_body: 0",
            11,
            "fetch.max_body: 0 is too small: at least 1KB (a feed is bigger than that)",
        ),
        (
            "kind: feed\n    url: https://blog.example.com/feed",
            "kind: hackernews\n    query: acme\n    request_interval: .inf",
            8,
            "sources[0].request_interval: inf is not a number of seconds: it must be finite",
        ),
        # 15.11: a bad port is one line, not thirteen
        (
            "port: 587",
            "port: 99999",
            20,
            "alerts.channels[1].port: 99999 is too large: at most 65535",
        ),
        # 16: did you mean, channel kinds on their own line, human URL and address messages
        ("every: 15m", "evry: 15m", 8, "sources[0].evry: unknown key (did you mean every?)"),
        (
            "alerts:\n",
            "alert:\n",
            12,
            "alert: unknown key (did you mean alerts?)",
        ),
        (
            "port: 587",
            "prot: 587",
            20,
            "alerts.channels[1].prot: unknown key (did you mean port?)",
        ),
        (
            "kind: feed",
            "kind: hacker-news",
            6,
            "sources[0].kind: unknown kind 'hacker-news' (did you mean hackernews?); known "
            "kinds: bluesky, discourse, feed, gdelt, github, google_alerts, hackernews, "
            "jetstream, lemmy, mastodon, reddit, stackexchange, youtube",
        ),
        (
            "kind: slack",
            "kind: slak",
            15,
            "alerts.channels[0].kind: unknown channel kind 'slak' (did you mean slack?); "
            "known kinds: slack, email, webhook",
        ),
        (
            "url: https://blog.example.com/feed",
            "url: blog.example.com/feed",
            7,
            "sources[0].url: not a web address: write it in full, starting with https:// "
            "(or http://)",
        ),
        (
            "to: [marketing@example.com]",
            "to: marketing-at-quillo",
            22,
            "alerts.channels[1].to[0]: 'marketing-at-quillo' is not an email address "
            "(like marketing@example.com)",
        ),
        (
            "from: listener@example.com",
            "from: listener at example.com",
            21,
            "alerts.channels[1].from: 'listener at example.com' is not an email address "
            "(like marketing@example.com)",
        ),
        # 15.8: duplicate keys are named with both lines
        (
            "every: 15m",
            "every: 15m\n    every: 1m",
            9,
            "sources[0].every: duplicate key 'every' (already set on line 8)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_one_located_line_per_mistake(
    tmp_path: Path, old: str, new: str, line: int, expected: str
) -> None:
    code, errors, cfg = check(tmp_path, edited(old, new))
    assert code == 2
    assert errors == [f"error: {cfg}:{line}: {expected}"]


def test_a_source_on_this_machine_may_be_polled_every_second(tmp_path: Path) -> None:
    local = edited("url: https://blog.example.com/feed", "url: http://127.0.0.1:8080/feed")
    code, errors, _ = check(tmp_path, local.replace("every: 15m", "every: 1s"))
    assert (code, errors) == (0, [])
    code, errors, cfg = check(tmp_path, local.replace("every: 15m", "every: 100ms"))
    assert code == 2
    assert errors == [
        f"error: {cfg}:8: sources[0].every: 100ms is too often: a source on this machine is "
        "polled at most every 1s"
    ]


def test_several_mistakes_each_on_their_own_line(tmp_path: Path) -> None:
    text = (
        BASE.replace("every: 15m", "evry: 15m")
        .replace("port: 587", "port: 99999")
        .replace("kind: slack", "kind: slak")
    )
    code, errors, cfg = check(tmp_path, text)
    assert code == 2
    assert sorted(errors) == sorted(
        [
            f"error: {cfg}:8: sources[0].evry: unknown key (did you mean every?)",
            f"error: {cfg}:15: alerts.channels[0].kind: unknown channel kind 'slak' (did you "
            "mean slack?); known kinds: slack, email, webhook",
            f"error: {cfg}:20: alerts.channels[1].port: 99999 is too large: at most 65535",
        ]
    )


def test_merge_keys_and_aliases_still_work(tmp_path: Path) -> None:
    # A source that takes another's keys and overrides two of them is not a duplicate key.
    text = edited(
        "  - name: blog\n",
        "  - &blog {name: blog-b, kind: feed, url: 'https://b.example.com/f', every: 1h}\n"
        "  - <<: *blog\n    name: blog-c\n    every: 2h\n"
        "  - name: blog\n",
    )
    code, errors, _ = check(tmp_path, text)
    assert (code, errors) == (0, [])


def test_an_alias_bomb_is_refused_with_its_line(tmp_path: Path) -> None:
    # Six levels of nine aliases: half a million values from a few hundred bytes (a real bomb
    # has nine levels and never finishes; this one stays small enough to fail safely).
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcde", "bcdef", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    text = "\n".join(levels) + "\nbrands:\n  - name: Acme\n    terms: *f\n"
    code, errors, cfg = check(tmp_path, text)
    assert code == 2
    assert errors == [
        f"error: {cfg}:6: f: aliases (*name) repeat more than 100,000 values: write the values "
        "out, or use fewer nested aliases"
    ]


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    code, errors, cfg = check(tmp_path, "brands: &b\n  - name: Acme\n    terms: *b\n")
    assert code == 2
    assert errors == [
        f"error: {cfg}:1: brands[0].terms: an alias refers to the anchor it is inside (a loop)"
    ]


def uncomment_examples(text: str) -> str:
    """Uncomment what the template shows as examples: commented lines that are YAML keys or
    list items (`# key: value`, `# - name: x`), not the prose around them."""
    example = re.compile(r'^(\s*)# (\s*(?:- )?(?:[\w]+|"[^"]*"):(?: .*)?)$')
    return "\n".join(example.sub(r"\1\2", line) for line in text.splitlines()) + "\n"


def test_init_examples_are_valid_when_uncommented(tmp_path: Path) -> None:
    runner = CliRunner(env={"SLACK_WEBHOOK_URL": "https://hooks.example.com/x"})
    cfg = tmp_path / "my.yaml"
    assert runner.invoke(cli, ["init", str(cfg)]).exit_code == 0
    template = cfg.read_text()
    uncommented = uncomment_examples(template)
    assert uncommented.count("\n# ") == template.count("\n# ")  # prose stays commented
    assert "  - name: reddit-acme" in uncommented and "- name: marketing-email" in uncommented
    cfg.write_text(uncommented)
    env = {"SLACK_WEBHOOK_URL": "https://hooks.example.com/x", "SMTP_USER": "u"}
    result = CliRunner(env={**env, "SMTP_PASSWORD": "p"}).invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.stderr
    assert re.search(r"reddit-acme\s+reddit\s+every 15m", result.stdout)
    assert "marketing-slack (slack), marketing-email (email)" in result.stdout


def test_init_template_as_written_checks(tmp_path: Path) -> None:
    cfg = tmp_path / "sources.yaml"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(cfg)]).exit_code == 0
    result = runner.invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.stderr
    assert "alert channels (0)" in result.stdout
