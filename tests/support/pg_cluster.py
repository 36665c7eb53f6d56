"""A PostgreSQL server of a test's own, to stop, restart, freeze and thaw while a run trains against it.

The suite's shared server (``TRACKER_TEST_POSTGRES``) must stay up for every other test, so the outage tests
start their own with ``scripts/test_postgres.sh`` on a free port.

Example:
    ```python
    with Cluster.start() as pg:
        ...           # train against pg.url
        pg.stop()     # pg_ctl stop -m immediate: a crash
        pg.restart()
        pg.freeze()   # SIGSTOP to every server process: a hung server
        pg.thaw()
    ```
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.children import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A running throw-away cluster: its URL, and the faults a test inflicts on it."""

    def __init__(self, url: str, folder: Path, port: int) -> None:
        self.url, self.folder, self.port = url, folder, port
        self._bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []

    @classmethod
    def start(cls) -> Cluster:
        port = _free_port()
        with tempfile.NamedTemporaryFile("r") as where:
            url = subprocess.run(
                [str(REPO / "scripts" / "test_postgres.sh")], env={**os.environ, "PGPORT_TEST": str(port), "PG_TEST_DIR_FILE": where.name},
                check=True, capture_output=True, text=True, timeout=120,
            ).stdout.strip()
            folder = Path(where.read().strip())
        return cls(url, folder, port)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self._as_owner, str(self._bin / "pg_ctl"), f"--pgdata={self.folder / 'data'}", *args],
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        """Stop the server as a crash would: ``pg_ctl stop -m immediate``."""
        self._pg_ctl("stop", "-m", "immediate")

    def restart(self) -> None:
        """Start the stopped server again, on the same port."""
        self._pg_ctl(f"--log={self.folder / 'server.log'}", "--wait", "--timeout=60",
                     "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c max_connections=200", "start")

    def _processes(self) -> list[int]:
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """SIGSTOP the server and every backend: connections stay open and nothing answers (a hung server)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        try:
            self.thaw()
        except (OSError, ValueError):
            pass
        subprocess.run([*self._as_owner, str(self._bin / "pg_ctl"), f"--pgdata={self.folder / 'data'}", "stop", "-m", "immediate"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
