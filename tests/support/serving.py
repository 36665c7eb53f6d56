"""A real ``python -m tracker.serve`` process for the tests and scripts, an event-stream reader, and Chromium.

``start(db)`` launches the server on a free port and returns once it printed its URL.
``Events(url)`` reads ``/api/events`` in a thread. ``Watcher(db, run)`` is a server with an open
page's traffic, for the scripts that check that serving does not disturb training
(``python -m scripts.crash_torture --serve``, ``python -m scripts.sweep_bench --serve``).
``chromium(playwright)`` launches ``/usr/bin/chromium`` with the issue's flags (Playwright's own
browser download is never used); without it the browser tests skip, or fail when ``CI=true`` or
``TRACKER_TEST_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
# Read at import: the suite's autouse fixture clears TRACKER_* variables before each test.
REQUIRE_BROWSER = os.environ.get("CI") == "true" or os.environ.get("TRACKER_TEST_REQUIRE_SERVERS") == "1"


def env(**extra: str) -> dict[str, str]:
    """The environment for a child: no TRACKER_* from the caller, this checkout importable."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR"}
    out.update(PYTHONPATH=str(ROOT), **extra)
    return out


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    #: What it printed on stdout after its first line, once stopped.
    out: str = ""

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """Ctrl-C the server; its exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"python -m tracker.serve did not stop within {timeout} s of SIGINT:\n{err[-3000:]}") from None
        return self.proc.returncode, err


def start(db: str, *args: str, python_flags: tuple[str, ...] = ()) -> Server:
    """``python -m tracker.serve --db DB --port 0 ARGS``, running; its URL from the line it prints."""
    proc = subprocess.Popen(
        [sys.executable, *python_flags, "-m", "tracker.serve", "--db", db, "--port", "0", *args],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    line = proc.stdout.readline()
    found = re.search(r"on (https?://\S+?)/? ", line)
    if not found:
        proc.kill()
        raise RuntimeError(f"python -m tracker.serve printed no URL: {line!r}\n{proc.communicate()[1][-3000:]}")
    return Server(proc, found[1].rstrip("/"))


class Events:
    """Reads ``url``'s ``/api/events`` in a thread: `wait` for an event that matches."""

    def __init__(self, url: str) -> None:
        self.received: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        event = ""
        try:
            with self._client.stream("GET", f"{url}/api/events") as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        self.received.put((event, json.loads(line.removeprefix("data: "))))
        except httpx.HTTPError:
            pass  # the server went away, or close() closed the client
        self.received.put(("closed", {}))

    def wait(self, match: Callable[[str, dict], bool], timeout: float = 60) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event, payload = self.received.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout} s") from None
            if match(event, payload):
                return event, payload
            if event == "closed":
                raise AssertionError("the event stream closed before a matching event came")

    def close(self) -> None:
        self._client.close()


def run_event(name: str, **fields: object) -> Callable[[str, dict], bool]:
    """Matches a ``runs`` event in which run ``name`` has all of ``fields``."""
    return lambda event, payload: event == "runs" and any(
        r["name"] == name and all(r.get(k) == v for k, v in fields.items()) for r in payload["runs"]
    )


class Watcher:
    """A server on ``db`` with a page's traffic: an open event stream, and the run list and ``run``'s curves
    fetched again and again. It starts once ``db`` exists (the server opens no missing database).

    ``stop()`` returns what went wrong: a server error, a failed request, or an unclean exit.
    """

    def __init__(self, db: str, run: str, *, interval: float = 0.2) -> None:
        self.problems: list[str] = []
        self.requests = 0
        self._db, self._run, self._interval = db, run, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while "://" not in self._db and not Path(self._db).exists():
            if self._stopping.wait(0.05):
                return
        try:
            server = start(self._db)
        except RuntimeError as e:
            self.problems.append(str(e).splitlines()[0])
            return
        events = Events(server.url)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not self._stopping.wait(self._interval):
                    for path in ("/api/runs", f"/api/runs/{self._run}", f"/api/runs/{self._run}/curves?max_points=500"):
                        status = client.get(path).status_code
                        self.requests += 1
                        if status >= 500:  # 404 is fine: the run may not be recorded yet
                            self.problems.append(f"GET {path} answered {status}")
        except httpx.HTTPError as e:
            self.problems.append(f"request failed: {e!r}")
        finally:
            events.close()
            code, err = server.stop()
            if code != 0:
                self.problems.append(f"server exited {code}: {err.strip().splitlines()[-1:]}")

    def stop(self) -> list[str]:
        self._stopping.set()
        self._thread.join(timeout=60)
        return self.problems


def chromium(playwright):  # noqa: ANN001, ANN201 - Playwright's types, imported only by the browser tests
    """The system's Chromium, launched headless; skips (fails in CI) where it is missing."""
    import pytest

    if not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(reason + "; CI=true or TRACKER_TEST_REQUIRE_SERVERS=1 makes this an error")
        pytest.skip(reason)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)

#: The origin the web view's test client (the ``client`` fixture) and its pages are served from.
ORIGIN = "http://127.0.0.1:6007"
