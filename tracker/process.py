"""Process identity and liveness: who this process is, and is the process that wrote an attempt still running?

A pid alone cannot say.

In containers the training process is often pid 1 at every restart, and after a
reboot pids are handed out again: the recorded pid "exists" but is another
process, or this one. So a process is identified by its pid, its host and its
start: the boot id and its start time in clock ticks since boot, from ``/proc``.

Example:
    >>> me = this_process_start()
    >>> is_running(socket.gethostname(), os.getpid(), me)
    True
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from tracker.redact import redact

#: Distributions whose versions every attempt records.
_VERSIONED = ("tracker", "numpy", "sqlalchemy")


@functools.cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_of(pid: int) -> str | None:
    """``"<boot id>:<start time>"`` of process ``pid``, or None where ``/proc`` does not tell."""
    fields, boot = _stat_fields(pid), _boot_id()
    if fields is None or boot is None or len(fields) < 20:
        return None
    return f"{boot}:{fields[19].decode()}"  # field 22 of stat: starttime


def this_process_start() -> str | None:
    """The identity `start_of` gives this process."""
    return start_of(os.getpid())


def is_this_process(host: str, pid: int, start: str | None) -> bool:
    """Whether the recorded process is this very process (for example, an outer ``track`` block)."""
    return host == socket.gethostname() and pid == os.getpid() and start is not None and start == this_process_start()


def is_running(host: str, pid: int, start: str | None) -> bool:
    """Whether the recorded process may still run. On another host nothing can be checked: True."""
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        # Our own pid: either we recorded it (nested blocks), or an earlier process that had it is gone.
        return is_this_process(host, pid, start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: the pid is all there is to go by
    # A killed process whose parent has not reaped it still answers kill(0); in
    # containers without an init that reaps, such zombies linger.
    if fields[0] == b"Z":
        return False
    now = start_of(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class ProcessInfo:
    """How to launch the training process again."""

    executable: str
    argv: list[str]
    cwd: str
    host: str
    pid: int
    versions: dict[str, str]
    #: Boot id and start time of the process (`tracker.process.start_of`), so that a reused pid is not taken for it.
    start: str | None = None


def this_process(frameworks: tuple[str, ...] = (), environment: Mapping[str, str] | None = None) -> ProcessInfo:
    """How this process was started, to record with an attempt: enough to launch it again."""
    versions = {"python": sys.version.split()[0], **(environment or {})}
    for dist in (*_VERSIONED, *frameworks):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return ProcessInfo(
        executable=sys.executable, argv=[redact(arg) for arg in sys.orig_argv[1:]], cwd=os.getcwd(),
        host=socket.gethostname(), pid=os.getpid(), versions=versions, start=this_process_start(),
    )
