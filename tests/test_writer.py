"""The background writer: order, at most one epoch in flight, failures surface at the next hand-over."""

from __future__ import annotations

import threading

import pytest

from tracker.run.writer import BackgroundWriter, WriterFailed


def test_jobs_commit_in_order_and_close_drains_them():
    done = []
    writer = BackgroundWriter(done.append, name="t")
    for i in range(5):
        writer.submit(i)
    writer.close()
    assert done == [0, 1, 2, 3, 4]


def test_a_hand_over_waits_until_the_previous_job_is_committed():
    release = threading.Event()
    started = threading.Event()
    committed = []

    def slow_commit(job: int) -> None:
        started.set()
        if job == 0:
            release.wait(timeout=30)
        committed.append(job)

    writer = BackgroundWriter(slow_commit, name="t")
    writer.submit(0)
    assert started.wait(timeout=30)
    second = threading.Thread(target=writer.submit, args=(1,))
    second.start()
    second.join(timeout=0.2)
    assert second.is_alive(), "training ran two epochs ahead of the newest commit"
    assert committed == []
    release.set()
    second.join(timeout=30)
    writer.flush()
    assert committed == [0, 1]
    writer.close()


def test_a_failure_is_raised_at_the_next_hand_over_and_later_jobs_never_commit():
    committed = []

    def commit(job: int) -> None:
        if job == 1:
            raise OSError(28, "No space left on device")
        committed.append(job)

    writer = BackgroundWriter(commit, name="t")
    writer.submit(0)
    writer.submit(1)
    with pytest.raises(WriterFailed, match="No space left on device"):
        writer.submit(2)
    with pytest.raises(WriterFailed):
        writer.flush()
    writer.close()
    assert committed == [0]
