"""sources.yaml validation: what a user sees when the config is right, and when it is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from listener.config import ConfigError, load_config, parse_duration
from listener.sentiment import SentimentConfig

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
database: data/mentions.db
brands:
  - name: Acme
    terms: [Acme, "Acme Corp", acme.com, "@acme"]
    exclude: ["Acme Brick"]
    case_sensitive: false
    products:
      - name: Rocket Skates
        terms: ["Rocket Skates", RocketSkates]
sources:
  - name: acme-blog
    kind: feed
    url: https://blog.example.com/feed
    every: 15m
  - name: forum
    url: https://forum.example.com/latest.rss
alerts:
  channels:
    - name: marketing-slack
      kind: slack
      webhook_url: ${SLACK_WEBHOOK_URL}
    - name: marketing-email
      kind: email
      host: smtp.example.com
      port: 587
      starttls: true
      username: ${SMTP_USER}
      password: ${SMTP_PASSWORD}
      from: listener@example.com
      to: [marketing@example.com]
"""

ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
    "SMTP_USER": "u",
    "SMTP_PASSWORD": "p",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env=ENV if env is None else env)
    return str(err.value)


def test_design_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env=ENV)
    assert config.database == tmp_path / "data" / "mentions.db"
    acme = config.brands[0]
    assert acme.terms[0] == "Acme" and "@acme" in acme.terms
    assert acme.products[0].terms == ("Rocket Skates", "RocketSkates")
    blog, forum = config.sources
    assert blog.every_s == 900 and blog.url == "https://blog.example.com/feed"
    assert forum.kind == "feed" and forum.every_s == 900  # defaults
    assert config.alerts.channels[0].webhook_url == ENV["SLACK_WEBHOOK_URL"]
    assert config.alerts.channels[1].password == "p"


def test_unknown_key_named_with_its_place_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("    every: 15m\n", "    evry: 15m\n")
    msg = problems(tmp_path, text)
    assert "sources[0].evry: unknown key" in msg
    assert f"{tmp_path / 'sources.yaml'}:14:" in msg


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    msg = problems(tmp_path, GOOD, env={"SMTP_USER": "u", "SMTP_PASSWORD": "p"})
    assert (
        "alerts.channels[0].webhook_url: environment variable SLACK_WEBHOOK_URL is not set" in msg
    )


def test_bad_duration_and_unknown_kind(tmp_path: Path) -> None:
    text = GOOD.replace("every: 15m", "every: soon").replace(
        "  - name: forum\n", "  - name: forum\n    kind: carrier-pigeon\n"
    )
    msg = problems(tmp_path, text)
    assert "sources[0].every: 'soon' is not a duration" in msg
    assert "sources[1].kind: unknown kind 'carrier-pigeon'" in msg


def test_duplicate_names_and_missing_url(tmp_path: Path) -> None:
    text = GOOD.replace(
        "name: forum\n    url: https://forum.example.com/latest.rss", "name: acme-blog"
    )
    msg = problems(tmp_path, text)
    assert "sources[1].name: 'acme-blog' is already used by sources[0]" in msg
    assert "sources[1].url: required key is missing" in msg


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    msg = problems(tmp_path, "brands:\n  - name: [Acme\n")
    assert "not valid YAML" in msg and "sources.yaml:" in msg


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="listener init"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h30m", 5400), ("90s", 90), ("2d", 172800), (45, 45), ("1w", 604800)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_example_and_starter_configs_are_valid(tmp_path: Path) -> None:
    example = load_config(REPO / "sources.yaml", env={})
    assert {s.kind for s in example.sources} == {"feed", "hackernews", "reddit", "stackexchange"}
    starter = load_config(REPO / "listener" / "starter.yaml", env={})
    assert starter.brands[0].name == "Acme"


def test_sentiment_overrides_validated(tmp_path: Path) -> None:
    text = GOOD + "sentiment:\n  lexicon:\n    refund: -9\n    still waiting: -2\n"
    msg = problems(tmp_path, text)
    assert "sentiment.lexicon" in msg and "-4 to 4" in msg


def test_sentiment_words_the_scorer_refuses_are_config_errors_with_their_line(
    tmp_path: Path,
) -> None:
    # A key that could never match is refused when the config is read, not when scoring starts.
    text = GOOD + 'sentiment:\n  lexicon:\n    "great!": 2\n'
    msg = problems(tmp_path, text)
    line = len(GOOD.splitlines()) + 2
    assert f"sources.yaml:{line}: sentiment.lexicon['great!']:" in msg
    assert "use 'great'" in msg


def test_the_sentiment_block_arrives_as_the_scorers_frozen_dataclass(tmp_path: Path) -> None:
    text = GOOD + 'sentiment:\n  lexicon:\n    Refund: -1.5\n  phrases:\n    "Still  waiting": -2\n'
    config = load_config(write(tmp_path, text), env=ENV)
    assert config.sentiment == SentimentConfig(
        lexicon={"refund": -1.5}, phrases={"still waiting": -2.0}
    )
