"""Shared fixtures: a fresh database per test, runs recorded without Keras, a tiny model; how many xdist workers."""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.support import servers
from tests.support.postgres import fresh_postgres_database
from tracker import Run, track


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`cmd &` without job control) with SIGINT ignored, and children
    # inherit an ignored signal: the tests that Ctrl-C a child (tracker.serve, a training script)
    # would then wait on it in vain. A handled signal reverts to the default in the child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: The most workers ``-n auto`` starts: each holds TensorFlow (about 1 GB) and its tests start children that
#: train, so more would trade memory, and the timing of the tests that stop a child mid-batch, for little.
MAX_AUTO_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` (pyproject.toml's default) starts: one per CPU this process may run on,
    at most `MAX_AUTO_WORKERS`, and no more than the tests named one by one (``file.py::test``); none for
    one, which then runs in this process as plain pytest runs it. xdist's ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still decides when set, and ``-n 0`` (or ``-p no:xdist``) turns the workers off."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    workers = min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
    if config.args and all("::" in arg for arg in config.args):
        workers = min(workers, len(config.args))
    return workers if workers > 1 else 0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No TRACKER_* variable leaks in from the caller; relative paths land in tmp_path, and so do the spools of
    runs on a server (which the tests' children inherit: `tests.support.children.child_env` keeps it)."""
    for key in list(os.environ):
        if key.startswith("TRACKER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRACKER_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "tracker.db")


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server (skips, or fails in CI, without one), dropped after the test."""
    admin_url = servers.require_postgres()
    with ExitStack() as stack:
        try:
            url = stack.enter_context(fresh_postgres_database(admin_url, prefix="tracker_test"))
        except sa.exc.OperationalError as e:
            pytest.fail(f"PostgreSQL server at {admin_url.render_as_string()} is unreachable: {e}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> str:
    """A new empty database: a SQLite file, then a fresh PostgreSQL database.

    Tests that hold only for SQLite take ``@tests.support.servers.sqlite_only``.
    """
    return request.getfixturevalue({"sqlite": "sqlite_db", "postgresql": "postgres_db"}[request.param])


@pytest.fixture
def s3_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/ckpt`` on a real S3-compatible server on loopback; its endpoint and keys are in the environment."""
    return servers.fresh_s3_prefix(monkeypatch)


@pytest.fixture
def ckpt(tmp_path: Path) -> str:
    return str(tmp_path / "ckpt")


def loss_at(epoch: int) -> dict[str, float]:
    return {"loss": 1.0 / (epoch + 1), "val_loss": 1.5 / (epoch + 1) + 0.01 * epoch, "accuracy": 1 - 1.0 / (epoch + 2)}


@pytest.fixture
def record(db: str, ckpt: str) -> Iterator[Callable[..., Run]]:
    """Record a run through the real protocol (files, transactions), with numpy state instead of a model.

    ``record("r", 5)`` commits epochs 0..4 with `loss_at` metrics and finishes the attempt;
    ``finish=None`` leaves it open as a crashed writer would.
    """

    def _record(name: str, epochs: int, *, start: int | None = None, finish: str | None = "completed",
                metrics: Callable[[int], dict[str, float]] = loss_at, **options) -> Run:
        options.setdefault("monitor", "val_loss")  # no framework here to choose one
        run = track(name, db=db, checkpoint_dir=ckpt, **options)
        run.start()
        first = run.initial_epoch if start is None else start
        for epoch in range(first, epochs):
            run.commit_epoch(epoch, metrics(epoch), {"w": np.full(4, float(epoch))}, {"format": 1})
        if finish is not None:
            run.set_target_epochs(epochs)
            run.finish(finish)
        else:
            left_open.append(run)
        return run

    left_open: list[Run] = []
    yield _record
    for run in left_open:  # a "crashed" writer's heartbeat must not outlive its test database
        if run._heartbeat is not None:
            run._heartbeat.stop()
        if run._store is not None:
            run._store.close()


@pytest.fixture
def other_process(db: str) -> Iterator[Callable[[str], int]]:
    """``other_process("r")``: the run's open attempt now belongs to another live process (a sleeper).

    An attempt left open by this very process counts as an outer, nested block, not as another writer.
    """
    import subprocess

    import sqlalchemy as sa

    from tracker.process import start_of
    from tracker.store import open_store
    from tracker.store.tables import attempts

    sleepers: list[subprocess.Popen] = []

    def _hand_over(name: str) -> int:
        sleeper = subprocess.Popen(["sleep", "300"])
        sleepers.append(sleeper)
        store = open_store(db)
        attempt = store.get_run(name).writer_attempt_id
        with store.engine.begin() as conn:
            conn.execute(sa.update(attempts).where(attempts.c.id == attempt).values(pid=sleeper.pid, process_start=start_of(sleeper.pid)))
        store.close()
        return sleeper.pid

    yield _hand_over
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()


def same_floats(a: list[float], b: list[float]) -> bool:
    """Equal element by element, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[dict[str, list], dict[str, bytes]]]:
    """``uninterrupted(backend, case)``: the curve and final state of ``tests/child_train.py`` trained 7 epochs
    without a kill, in a fresh process; each (backend, case) is trained once per test run and shared by every
    test that compares a killed-and-resumed run against it, in every xdist worker."""
    import subprocess
    import sys

    from tests.test_crash import CHILD, EPOCHS, _env, final_state
    from tracker import curves

    # xdist's workers share the parent of their base temporary folders: the first worker that needs a
    # reference trains it there under a lock, and the others wait for it and read it.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    trained: dict[tuple[str, str], tuple[dict[str, list], dict[str, bytes]]] = {}

    def _uninterrupted(backend: str, case: str) -> tuple[dict[str, list], dict[str, bytes]]:
        if (backend, case) not in trained:
            folder = shared / f"uninterrupted-{backend}-{case.replace(',', '+')}"
            folder.mkdir(exist_ok=True)
            db, ckpt = str(folder / "ref.db"), str(folder / "ckpt")
            with open(folder / "lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (folder / "done").exists():
                    # What a worker whose training failed left behind: the next one starts afresh.
                    shutil.rmtree(ckpt, ignore_errors=True)
                    for leftover in (Path(db), Path(f"{db}-wal"), Path(f"{db}-shm")):
                        leftover.unlink(missing_ok=True)
                    command = [sys.executable, str(CHILD), "ref", str(EPOCHS), "--case", case, "--backend", backend]
                    subprocess.run(command, env=_env(db, ckpt), cwd=folder, check=True, timeout=300)
                    (folder / "done").touch()
            trained[backend, case] = curves("ref", db=db), final_state(ckpt, "ref")
        return trained[backend, case]

    return _uninterrupted


@pytest.fixture(scope="session")
def keras_env():
    """Keras, imported once per session, with op determinism so runs can be compared bit for bit."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    return keras


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((48, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 48)


@pytest.fixture
def make_model(keras_env):
    """``make_model(kind)``: a tiny compiled CNN, seeded so that equal calls give equal models."""
    keras = keras_env

    def _make(kind: str = "sequential"):
        from tests.support.models import tiny

        keras.utils.set_random_seed(7)
        model = tiny(kind)
        model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    return _make


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs folder, filled to the last byte by ``full_disk / "filler"``: every further write fails with ENOSPC.

    Needs root (``mount``); skips with the reason otherwise.
    """
    import subprocess

    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(folder: Path) -> None:
    """Write ``folder / "filler"`` until the file system has no byte left."""
    with open(folder / "filler", "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


@pytest.fixture
def client(db: str) -> Iterator[object]:
    """A Starlette test client of the web view over ``db``, opened before the test records anything, so that the app
    must see what is written later."""
    from starlette.testclient import TestClient

    from tests.support.serving import ORIGIN
    from tracker.serve.app import allowed_hosts, create_app
    from tracker.store import open_store

    store = open_store(db)
    try:
        with TestClient(create_app(store, hosts=allowed_hosts("127.0.0.1")), base_url=ORIGIN) as c:
            yield c
    finally:
        store.close()
