"""The live push behind the pages: one poller per server, fanned out to every open page as server-sent events.

Every ``interval`` seconds, while at least one page listens, the poller reads a small
stamp of every run in one short transaction (`Store.run_stamps`) and compares it with
what it saw last: a new epoch, a new best, a new attempt or resume point, a status
that changed. Liveness is re-evaluated at each poll because a crash changes no row:
the writer's lease lapses, or its pid disappears, and `effective_status` says
``crashed``. Each page gets the changed runs' summaries and fetches what it shows of them.

The first message on a stream is ``hello``, sent after a poll that began after the page
subscribed: a page that re-reads its data on ``hello`` misses no change, because
every change after that poll's read is pushed by a later poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import anyio

from tracker.errors import StoreError
from tracker.serve import data
from tracker.serve.follow import follow
from tracker.store import Store

log = logging.getLogger(__name__)

#: A comment line now and then keeps proxies and the browser from dropping an idle stream.
KEEPALIVE_S = 15.0
#: Events a page may leave unread. Past that its stream is ended: the browser reconnects by itself,
#: and a page re-reads everything on its new ``hello``, so a stalled page costs bounded memory.
MAX_PENDING = 100


class ChangeFeed:
    """Polls ``store`` for changes while pages listen; `stream` is one page's server-sent events.

    Example:
        ```python
        feed = ChangeFeed(store, interval=0.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run)
            async for chunk in feed.stream():   # b"event: hello\\n...", b"event: runs\\ndata: {...}\\n\\n"
                ...
        ```

    Args:
        store: The open store; each poll is one short read transaction.
        interval: Seconds between polls. Defaults to 0.5.
    """

    def __init__(self, store: Store, *, interval: float = 0.5) -> None:
        self._store = store
        self._interval = interval
        self._pages: dict[asyncio.Queue, bool] = {}  # queue -> greeted with hello yet
        self._seen: dict[str, tuple] | None = None
        self._failing = False  # the last poll failed: said once in the log, until one succeeds
        self._wake = asyncio.Event()
        self._closed = False

    def close(self) -> None:
        """End every open stream now (server shutdown: uvicorn waits for open responses to finish)."""
        self._closed = True
        self._wake.set()
        for queue in self._pages:
            queue.put_nowait(None)

    async def run(self) -> None:
        """The poll loop; runs until cancelled or closed."""
        while not self._closed:
            if not self._pages:
                self._seen = None  # nobody listens: stop reading, and start afresh with the next page
                self._wake.clear()
                await self._wake.wait()
                continue
            greet = [q for q, greeted in self._pages.items() if not greeted]
            try:
                changed = await anyio.to_thread.run_sync(lambda: follow(self._store, self._poll))
            except StoreError as e:
                # A busy, unreachable or missing database: keep the pages, try again at the next poll. Said once, not
                # at every poll.
                if not self._failing:
                    log.warning("tracker.serve: cannot read the database: %s Trying again every %g s.", e, self._interval)
                self._failing = True
                changed = None
            if changed is not None and self._failing:
                log.warning("tracker.serve: can read the database again.")
                self._failing = False
                # It may be another database now (a backup put back): every page re-reads all it shows on a hello.
                greet = list(self._pages)
            if changed is not None:
                for queue in greet:
                    if queue in self._pages:
                        self._pages[queue] = True
                        _offer(queue, ("hello", {}))
                if changed:
                    for queue, greeted in self._pages.items():
                        if greeted:
                            _offer(queue, ("runs", {"runs": changed}))
            await anyio.sleep(self._interval)

    def _poll(self, store: Store) -> list[dict]:
        """The summaries of the runs that changed since the previous poll (none on the first).

        Each poll reads only `Store.run_stamps`; the full summaries are read only when a run changed.
        """
        now = {}
        for name, (stamp, newest) in store.run_stamps().items():
            # A running run's newest attempt: its start epoch (a resume shows before its first commit) and
            # whether it still lives (a crash changes no row), by the same rule as `effective_status`.
            attempt = None if newest is None else (newest.id, newest.initial_epoch, newest.alive())
            now[name] = (stamp, attempt)
        before, self._seen = self._seen, now
        if before is None:
            return []
        changed = {name for name, key in now.items() if before.get(name) != key}
        if not changed:
            return []
        return [summary for summary in data.list_runs(store) if summary["name"] in changed]

    async def stream(self, only: set[str] | None = None) -> AsyncIterator[bytes]:
        """One page's event stream: ``hello``, then ``runs`` events with the changed runs' summaries (of the runs
        in ``only``, if given: a share link's page hears of nothing else)."""
        queue: asyncio.Queue = asyncio.Queue(MAX_PENDING + 1)  # room for the end-of-stream mark
        self._pages[queue] = False
        self._wake.set()
        try:
            while not self._closed:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is None:
                    return
                event, payload = item
                if only is not None and event == "runs":
                    payload = {**payload, "runs": [r for r in payload["runs"] if r.get("name") in only]}
                    if not payload["runs"]:
                        continue
                yield f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()
        finally:
            del self._pages[queue]


def _offer(queue: asyncio.Queue, item: tuple[str, dict]) -> None:
    """Queue ``item`` for a page; a page that left `MAX_PENDING` events unread gets its stream ended instead."""
    if queue.qsize() < MAX_PENDING:
        queue.put_nowait(item)
        return
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
