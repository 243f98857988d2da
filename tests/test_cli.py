"""The command line as a new user meets it in the first hour: an offline first poll, `-c` on
either side of the verb, hints that repeat it, `serve` and `demo` as processes (SIGTERM, a busy
port, the demo's temporary folder), and help that fits and shows examples."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import rss, write_config

from listener.cli import cli
from listener.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent

# `.invalid` never resolves (RFC 2606): the lookup fails here, nothing leaves the machine.
MISSING = "http://nonexistent.invalid/feed"
ALSO_MISSING = "http://also-missing.invalid/atom.xml"


def no_retries(cfg: Path) -> Path:
    cfg.write_text(cfg.read_text().replace("retries: 1", "retries: 0"))
    return cfg


def listener(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`listener ARGS` in a process of its own, stdout and stderr together, as a user sees it."""
    return subprocess.run(
        [sys.executable, "-m", "listener", *args],
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )


@pytest.fixture
def no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTENER_CONFIG", raising=False)


# ------------------------------------------------------------------------------ offline first poll


def test_offline_poll_says_so_once_names_each_host_once_and_points_at_demo(tmp_path: Path) -> None:
    cfg = no_retries(write_config(tmp_path, [("blog", MISSING), ("forum", ALSO_MISSING)]))
    done = listener("-c", str(cfg), "poll")
    out = done.stdout
    assert done.returncode == 1, out
    assert "every source failed (2 of 2)" in out
    assert out.count("offline") == 1
    assert out.count("listener demo") == 1
    # Each host once, and the reason once: not per source, not again in a log line.
    assert out.count("nonexistent.invalid") == 1 and out.count("also-missing.invalid") == 1
    assert out.count("DNS lookup failed") == 1
    assert "WARNING" not in out


def test_some_sources_failing_says_how_many_names_the_host_and_exits_0(
    tmp_path: Path, httpd
) -> None:
    httpd.add("/feed", rss([{"title": "Acme ships", "link": "https://blog.example.com/a"}]))
    cfg = no_retries(write_config(tmp_path, [("blog", httpd.url("/feed")), ("gone", MISSING)]))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 0, result.output
    assert "sources: 1 ok, 1 of 2 failed" in result.output
    assert "failed: gone: DNS lookup failed" in result.output
    assert "(nonexistent.invalid)" in result.output
    assert "offline" not in result.output  # a source answered: the machine is online


def test_every_source_failing_with_an_answer_is_not_called_offline(tmp_path: Path, httpd) -> None:
    httpd.add("/a", "nope", status=404)
    httpd.add("/b", "nope", status=500)
    cfg = no_retries(write_config(tmp_path, [("a", httpd.url("/a")), ("b", httpd.url("/b"))]))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 1
    assert "every source failed (2 of 2)" in result.output
    assert "failed: a:" in result.output and "failed: b:" in result.output
    assert "offline" not in result.output


# ------------------------------------------------------------------------------------ config path


def test_c_after_the_verb_reads_that_config(
    tmp_path: Path, no_env_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    cfg = write_config(tmp_path / "elsewhere", [("blog", MISSING)])
    monkeypatch.chdir(tmp_path)  # no ./sources.yaml here
    runner = CliRunner()
    for args in (["check", "-c", str(cfg)], ["check", "--config", str(cfg)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert f"{cfg}: ok" in result.output and "blog" in result.output
    # ...and a nested verb takes it too.
    result = runner.invoke(cli, ["alerts", "test", "-c", str(cfg)])
    assert result.exit_code == 2 and f"no alert channels in {cfg}" in result.output


def test_every_verb_lists_c_in_its_help() -> None:
    runner = CliRunner()
    verbs = [[v] for v in cli.list_commands(None) if v != "demo"]  # demo writes its own config
    verbs += [["alerts", "test"], ["alerts", "flush"]]
    for verb in verbs:
        result = runner.invoke(cli, [*verb, "--help"])
        assert result.exit_code == 0, (verb, result.output)
        assert "-c, --config PATH" in result.output, verb


def test_init_hint_carries_c_and_works_as_printed(
    tmp_path: Path, no_env_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "my.yaml"])
    assert result.exit_code == 0, result.output
    hint = re.search(r"then run `([^`]+)`", result.output)
    assert hint and hint.group(1) == "listener -c my.yaml check"
    again = runner.invoke(cli, shlex.split(hint.group(1))[1:])
    assert again.exit_code == 0, again.output
    assert "my.yaml: ok" in again.output
    # The default file needs no -c.
    plain = runner.invoke(cli, ["init"])
    assert "then run `listener check`" in plain.output


def test_status_stats_and_serve_hints_repeat_c(tmp_path: Path, no_env_config: None) -> None:
    cfg = write_config(tmp_path, [("blog", MISSING)])
    runner = CliRunner()
    status = runner.invoke(cli, ["status", "-c", str(cfg)])
    assert f"run `listener -c {cfg} poll` or `listener -c {cfg} run`" in status.output
    stats = runner.invoke(cli, ["-c", str(cfg), "stats"])
    assert f"run `listener -c {cfg} poll` first" in stats.output
    serve = runner.invoke(cli, ["serve", "-c", str(cfg)])
    assert serve.exit_code == 1 and f"run `listener -c {cfg} poll` first" in serve.output


# -------------------------------------------------------------------------------------- processes


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """The process's output up to the line holding `marker` (it fails the test if it ends)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"exited {proc.wait()} before {marker!r}:\n{''.join(seen)}")


@pytest.fixture
def start() -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, tmpdir: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "listener", *args],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                "TMPDIR": str(tmpdir),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_stops_on_sigterm_with_exit_0(tmp_path: Path, start) -> None:
    demo = run_demo(tmp_path / "demo")
    port = free_port()
    proc = start("-c", str(demo.config_path), "serve", "--port", str(port), tmpdir=tmp_path)
    banner = read_until(proc, "Press Ctrl+C to stop.")
    assert f"dashboard: http://127.0.0.1:{port}/-/dashboard" in banner
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
        assert page.status == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_serve_on_port_0_shows_the_port_it_got(tmp_path: Path, start) -> None:
    demo = run_demo(tmp_path / "demo")
    proc = start("-c", str(demo.config_path), "serve", "--port", "0", tmpdir=tmp_path)
    banner = read_until(proc, "Press Ctrl+C to stop.")
    url = re.search(r"dashboard: (http://127\.0\.0\.1:[1-9][0-9]*/-/dashboard)", banner)
    assert url, banner
    with urllib.request.urlopen(url.group(1), timeout=30) as page:  # banner shown: it answers
        assert page.status == 200
    proc.send_signal(signal.SIGINT)  # Ctrl+C
    assert proc.wait(30) == 0


def test_demo_stops_on_sigterm_with_exit_0_and_removes_its_temporary_folder(
    tmp_path: Path, start
) -> None:
    proc = start("demo", "--port", str(free_port()), tmpdir=tmp_path)
    banner = read_until(proc, "Press Ctrl+C to stop.")
    database = Path(re.search(r"Database: (\S+)", banner).group(1))  # type: ignore[union-attr]
    assert database.exists() and database.parent.parent == tmp_path
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not database.parent.exists()
    assert list(tmp_path.iterdir()) == []
    assert "removed when the demo stops: keep it with --dir DIR" in banner


def test_demo_without_serve_removes_its_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli, ["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "Firmware 3.2" in result.output and "keep it with --dir DIR" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_serve_on_a_busy_port_says_so_naming_port_before_any_banner(
    tmp_path: Path, busy_port: int
) -> None:
    demo = run_demo(tmp_path)
    result = CliRunner().invoke(
        cli, ["-c", str(demo.config_path), "serve", "--port", str(busy_port)]
    )
    assert result.exit_code == 1
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output
    assert "Serving" not in result.output


def test_demo_on_a_busy_port_fails_before_polling(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli, ["demo", "--port", str(busy_port)])
    assert result.exit_code == 1
    assert "already in use" in result.output and "--port" in result.output
    assert "Polled" not in result.output and "listener demo:" not in result.output
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- help


def commands_section(text: str) -> list[str]:
    section = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


def test_every_verb_summary_fits_and_every_verb_has_examples() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"], terminal_width=80)
    nested = runner.invoke(cli, ["alerts", "--help"], terminal_width=80)
    lines = commands_section(top.output) + commands_section(nested.output)
    assert len(lines) >= 14
    for line in lines:
        assert not line.endswith("..."), line  # cut off
        assert len(line) <= 80, line
    assert "Examples:" in top.output and "Exit status" in top.output
    verbs = [[v] for v in cli.list_commands(None)] + [["alerts", "test"], ["alerts", "flush"]]
    for verb in verbs:
        help_text = runner.invoke(cli, [*verb, "--help"], terminal_width=80).output
        assert re.search(r"Examples?:\n\s+listener ", help_text), verb


def test_demo_port_is_described_and_poll_documents_its_exit_status() -> None:
    runner = CliRunner()
    demo_help = runner.invoke(cli, ["demo", "--help"], terminal_width=100).output
    port = next(line for line in demo_help.splitlines() if "--port" in line)
    assert "Port of the Datasette explorer" in port
    poll_help = runner.invoke(cli, ["poll", "--help"], terminal_width=100).output
    assert "1 when every" in poll_help and "0 when at least one source" in poll_help
