"""A real browser on a real server: `serve` runs as its own process on the demo database, and
headless Chromium opens the dashboard and a canned query, as a person would.

Screenshots land in tests/artifacts/ (gitignored) for a person to look at. Needs Debian's
`chromium` package (CI installs it); skipped with the reason when it is absent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from listener.demo import run_demo
from listener.web.charts import LABEL_COLORS

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (apt-get install chromium; .ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"serve exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demo(tmp_path_factory.mktemp("browser")).config_path


@pytest.fixture(scope="module")
def server(demo_config: Path) -> Iterator[str]:
    """`serve` on the demo database, in its own process; yields its base URL."""
    yield from serve_process(demo_config)


def serve_process(config: Path, *args: str, lines: list[str] | None = None) -> Iterator[str]:
    """`serve` on `config` in its own process (with `args`); yields its base URL. `lines`
    collects what it printed before it listened."""
    port = free_port()
    code = (
        "import sys; from listener.cli import State, serve; "
        "serve.main(sys.argv[2:], obj=State(sys.argv[1]), prog_name='listener serve')"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config), "--port", str(port), "--no-open", *args],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        if lines is not None:
            assert proc.stdout is not None
            while not any("Press Ctrl+C" in line for line in lines):
                line = proc.stdout.readline()
                assert line, "".join(lines)
                lines.append(line)
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def chromium(url: str, screenshot: Path, tmp_path: Path, size: str = "1280,1600") -> str:
    """Load `url` headless in a window of `size` (width,height); save a screenshot of that
    window and return the DOM after the page has run."""
    assert CHROMIUM is not None
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--screenshot={screenshot}",
            f"--window-size={size}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert screenshot.exists(), done.stderr[-2000:]
    return done.stdout


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, bytes per pixel and the unfiltered rows of an 8-bit, non-interlaced RGB(A) PNG
    (what Chromium writes). Pure Python: rows that repeat the one above, the common case in a
    screenshot, are copied rather than decoded byte by byte."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, residual = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0 or (kind == 2 and not any(residual)):
            line = residual if kind == 0 else prev
        elif kind == 2:
            line = bytes(map(lambda r, b: (r + b) & 0xFF, residual, prev))
        else:
            out = bytearray(residual)
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = prev[i]
                if kind == 1:
                    out[i] = (out[i] + a) & 0xFF
                elif kind == 3:
                    out[i] = (out[i] + (a + b) // 2) & 0xFF
                else:
                    c = prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[i] = (
                        out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                    ) & 0xFF
            line = bytes(out)
        rows.append(line)
        prev = line
    return width, bpp, rows


def count_color(path: Path, hex_color: str) -> int:
    """Pixels of exactly this colour in the screenshot."""
    _width, bpp, rows = png_rows(path)
    rgb = bytes.fromhex(hex_color.lstrip("#"))
    return sum(
        1 for row in rows if rgb in row for x in range(0, len(row), bpp) if row[x : x + 3] == rgb
    )


def test_dashboard_draws_its_charts_in_a_real_browser(server: str, tmp_path: Path) -> None:
    shot = ARTIFACTS / "dashboard.png"
    dom = chromium(f"{server}/-/dashboard", shot, tmp_path, size="1280,3200")  # the whole page
    assert "Mentions: last 7 days" in dom
    # What a marketer reads without clicking: the change on the previous week, the worst posts,
    # where mentions come from and who writes them.
    assert "Changes compare with the previous 7 days" in dom and "▲" in dom
    for panel in ("Most negative posts", "Top sources", "Top authors"):
        assert f"<h2>{panel}</h2>" in dom
    assert "Rosa Delgado" in dom.split("<h2>Top authors</h2>", 1)[1]
    charts = re.findall(r'<svg class="chart (\S+)".*?</svg>', dom, re.S)
    assert {"volume", "sentiment", "share", "weekly-share"} <= set(charts)
    volume = re.search(r'<svg class="chart volume".*?</svg>', dom, re.S)
    assert volume and '<rect class="bar negative"' in volume.group(0)
    assert re.search(r'<a href="/demo/mentions\?brand=Brewly&amp;label=negative', volume.group(0))
    assert "Firmware 3.2 for the Brewly Kettle is rolling out" in dom
    # The bars are painted, not only present in the DOM: the negative red is on screen.
    assert count_color(shot, LABEL_COLORS["negative"]) > 500


def test_canned_query_page_in_a_real_browser(server: str, tmp_path: Path) -> None:
    shot = ARTIFACTS / "negative_threads.png"
    dom = chromium(f"{server}/demo/negative_threads", shot, tmp_path)
    assert "Conversations that turned negative" in dom
    assert "Firmware 3.2 for the Brewly Kettle is rolling out" in dom
    assert "Rosa Delgado" in dom
    # The thread key opens the conversation's page.
    assert re.search(r'href="/-/thread\?key=blog\.brewly\.example', dom)


def test_thread_page_in_a_real_browser(server: str, tmp_path: Path) -> None:
    """The conversation a marketer opens from the dashboard or an alert, read top to bottom."""
    shot = ARTIFACTS / "thread.png"
    key = "blog.brewly.example/2026/firmware-3-2"
    dom = chromium(f"{server}/-/thread?{urlencode({'key': key})}", shot, tmp_path, "1280,2400")
    assert "<h1>Firmware 3.2 for the Brewly Kettle is rolling out</h1>" in dom
    said = [
        "Firmware 3.2 for the Brewly Kettle starts rolling out today",
        "After the update my kettle shows error E4",
        "Paused? Mine is already dead.",
    ]
    where = [dom.index(s) for s in said]
    assert where == sorted(where)
    assert "Rosa Delgado" in dom and "says they are leaving" in dom
    assert 'Status: <span class="triage new">new</span>' in dom
    # Negative posts wear the red label and a red edge, painted on screen.
    assert count_color(shot, LABEL_COLORS["negative"]) > 500


def test_last_24_hours_hour_by_hour_in_a_real_browser(server: str, tmp_path: Path) -> None:
    shot = ARTIFACTS / "dashboard_24h.png"
    dom = chromium(f"{server}/-/dashboard?days=1", shot, tmp_path, size="1280,3200")
    assert "Mentions: last 24 hours" in dom and "Volume and sentiment per hour" in dom
    volume = re.search(r'<svg class="chart volume".*?</svg>', dom, re.S)
    assert volume and len(re.findall(r">\d\d:00<", volume.group(0))) >= 10
    assert count_color(shot, LABEL_COLORS["negative"]) > 500


def test_mentions_table_shows_the_text_first_in_a_real_browser(server: str, tmp_path: Path) -> None:
    """On a laptop screen the rows start on the first screen, and a row reads left to right:
    what was said, how it feels, about whom, where, when, the link."""
    shot = ARTIFACTS / "mentions.png"
    dom = chromium(f"{server}/demo/mentions", shot, tmp_path, size="1280,900")
    headers = re.findall(r'<th [^>]*data-column="([^"]+)"', dom)
    assert headers[:8] == [
        "id",
        "snippet",
        "label",
        "compound",
        "brand",
        "source",
        "published_at",
        "url",
    ]
    # Negative rows wear a red label, painted within the first 900 pixels: the table is not
    # pushed below the fold by facets and column notes.
    assert count_color(shot, LABEL_COLORS["negative"]) > 500
    search = chromium(
        f"{server}/demo/mentions?_search=firmware",
        ARTIFACTS / "search.png",
        tmp_path,
        size="1280,900",
    )
    assert re.findall(r'<th [^>]*data-column="([^"]+)"', search)[:3] == ["id", "snippet", "label"]
    assert count_color(ARTIFACTS / "search.png", LABEL_COLORS["negative"]) > 500


@contextlib.contextmanager
def signed_in_proxy(upstream: str, cookies: dict[str, str]) -> Iterator[str]:
    """A loopback proxy to `upstream` that sends a signed-in browser's cookies with each GET:
    a headless screenshot cannot sign in first. Yields its base URL."""

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            got = httpx.get(upstream + self.path, cookies=cookies, follow_redirects=False)
            self.send_response(got.status_code)
            for name in ("content-type", "location"):
                if name in got.headers:
                    self.send_header(name, got.headers[name])
            self.send_header("content-length", str(len(got.content)))
            self.end_headers()
            self.wfile.write(got.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_signed_in_thread_page_changes_the_status_in_a_real_browser(
    demo_config: Path, tmp_path: Path
) -> None:
    """Signed in with `serve --root`'s login link, the page offers the change; after it, the
    status and its history show."""
    lines: list[str] = []
    key = "discourse:forum.beancounter.example:8812"  # the demo forum read as Discourse
    path = f"/-/thread?{urlencode({'key': key})}"
    for base in serve_process(demo_config, "--root", lines=lines):
        login = next(line.split(": ", 1)[1].strip() for line in lines if "sign in" in line)
        with httpx.Client(base_url=base) as client:
            assert client.get(login).status_code == 302
            page = client.get(path).text
            token = re.search(r'name="csrftoken" value="([^"]+)"', page)
            assert token, "signed in, the page offers the form"
            done = client.post(
                "/-/thread",
                data={
                    "key": key,
                    "status": "acknowledged",
                    "note": "support is calling the three customers",
                    "csrftoken": token.group(1),
                },
            )
            assert done.status_code == 302, done.text
            cookies = {k: v for k, v in client.cookies.items() if k != "ds_messages"}
        with signed_in_proxy(base, cookies) as proxy:
            shot = ARTIFACTS / "thread_signed_in.png"
            dom = chromium(proxy + path, shot, tmp_path, "1280,1400")
    assert '<select id="triage-status" name="status">' in dom
    assert 'Status: <span class="triage acknowledged">acknowledged</span>' in dom
    assert "as serve:root" in dom  # who the change will be recorded as
    assert re.search(r"<td>serve:root</td>\s*<td>support is calling the three customers</td>", dom)


def test_dashboard_shows_churn_risks_and_open_questions_in_a_real_browser(
    server: str, tmp_path: Path
) -> None:
    """What customers mean, where customer success looks: who says they are leaving, which
    questions wait for an answer (the page opened at that panel, as its link does)."""
    shot = ARTIFACTS / "dashboard_customer_voice.png"
    dom = chromium(f"{server}/-/dashboard", shot, tmp_path, size="1280,3800")  # the whole page
    churn = dom.split("<h2>Churn risks</h2>", 1)[1].split("</section>", 1)[0]
    assert "Daniel Moreau" in churn and "A kettle that needs firmware" in churn
    assert 'href="/-/thread?key=blog.brewly.example' in churn  # its conversation, one click
    # "I am done, switching to Steamline": leaving, though the sentence names only Steamline.
    assert "Rosa Delgado" in churn and "switching to Steamline" in churn
    questions = dom.split("<h2>Open questions nobody answered</h2>", 1)[1].split("</section>", 1)[0]
    assert "lena_pours" in questions and "Is the Brewly Grinder worth it" in questions
    # A question to three brands is one row, naming the three.
    assert questions.count("Brewly vs Steamline vs Kettlewise for pour-over?") == 1
    assert (
        "Brewly, Steamline, Kettlewise" in questions or "Brewly, Kettlewise, Steamline" in questions
    )
    assert "hardwater_hank" not in questions  # asked ten days ago: not this week
    assert "Daniel Moreau" not in questions
    requests = dom.split("<h2>Top requests per brand</h2>", 1)[1].split("</section>", 1)[0]
    assert "No feature or change requests in this period." in requests
