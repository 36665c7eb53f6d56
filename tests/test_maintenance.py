"""`tracker verify` and `tracker gc`, and SIGKILL in the middle of `rm`, `gc` and `rename`, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import tracker
from tests.support import invariants
from tests.test_crash import run_and_kill
from tracker.cli import main
from tracker.faults import CLI_BOUNDARIES

ORPHAN = "epoch-000042-0123456789ab.npz"


def npz(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.npz"))


def findings(out: str) -> list[tuple[str, str]]:
    """``(run, kind)`` of each finding line `verify` printed."""
    return [tuple(line.split(": ")[:2]) for line in out.splitlines() if line.count(": ") >= 2]


def test_verify_all_well(record, db, capsys):
    record("a", 3)
    record("b", 2, finish=None)

    assert main(["verify", "--db", db]) == 0
    assert capsys.readouterr().out == "2 run(s) checked, 0 with problems: all is well\n"


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_verify_reports_a_bad_checkpoint_and_the_fallback(record, db, ckpt, capsys, damage):
    record("a", 4)
    newest = max((Path(ckpt) / "a").glob("epoch-000003-*.npz"))
    if damage == "corrupt":
        newest.write_bytes(b"garbage")
    else:
        newest.unlink()

    assert main(["verify", "a", "--db", db]) == 1

    out = capsys.readouterr().out
    assert f"a: {damage}: {newest}: epoch 3:" in out
    assert "a: a resume would continue from epoch 2" in out
    assert out.endswith("1 run(s) checked, 1 with problems\n")


def test_gc_deletes_orphans_and_never_a_referenced_file(record, db, ckpt, capsys):
    record("a", 3)
    folder = Path(ckpt) / "a"
    kept = npz(folder)
    (folder / ORPHAN).write_bytes(b"x" * 100)
    (folder / ".epoch-000043-0123456789ab.npz.tmp").write_bytes(b"y" * 50)
    (folder / "mine.npz").write_bytes(b"z")  # not a name tracker gives: never touched

    assert main(["verify", "--db", db]) == 1
    assert sorted(findings(capsys.readouterr().out)) == [("a", "orphan"), ("a", "orphan")]

    assert main(["gc", "--dry-run", "--db", db]) == 0
    assert capsys.readouterr().out.endswith("would free 150 bytes (150 B) in 2 file(s)\n")
    assert ORPHAN in npz(folder)

    assert main(["gc", "--db", db]) == 0
    assert capsys.readouterr().out.endswith("freed 150 bytes (150 B) in 2 file(s)\n")
    assert npz(folder) == sorted([*kept, "mine.npz"])
    assert main(["verify", "--db", db]) == 0


def test_gc_never_touches_a_live_runs_folder(record, db, ckpt, capsys):
    record("live", 2, finish=None)
    temp = Path(ckpt) / "live" / ".epoch-000002-0123456789ab.npz.tmp"  # a write in progress
    temp.write_bytes(b"half")

    assert main(["gc", "--db", db]) == 0
    assert main(["verify", "--db", db]) == 0
    assert temp.exists()


def test_gc_applies_retention_to_selected_stopped_runs(record, db, ckpt, capsys):
    # Epoch 1 is the best val_loss; keep_last=None kept every checkpoint.
    record("old", 5, keep_last=None, metrics=lambda e: {"val_loss": 0.1 if e == 1 else 1.0 + e})
    record("failed", 3, keep_last=None, finish="failed")
    sizes = {p.name: p.stat().st_size for p in (Path(ckpt) / "old").glob("*.npz")}

    assert main(["gc", "--older-than", "0", "--status", "completed", "--dry-run", "--db", db]) == 0
    assert len(npz(Path(ckpt) / "old")) == 5
    dry = capsys.readouterr().out

    assert main(["gc", "--older-than", "0", "--status", "completed", "--db", db]) == 0

    out = capsys.readouterr().out
    left = npz(Path(ckpt) / "old")
    assert [n[:12] for n in left] == ["epoch-000001", "epoch-000004"]  # the best and the resume point
    freed = sum(size for name, size in sizes.items() if name not in left)
    assert out.endswith(f"freed {freed} bytes ({freed / 1024:.1f} KiB) in 3 file(s)\n")
    assert dry.replace("would delete", "deleted").replace("would free", "freed") == out
    assert len(npz(Path(ckpt) / "failed")) == 3  # not selected by --status
    assert invariants.check(db, "old") == [0, 1, 2, 3, 4]
    assert tracker.curves("old", db=db)["epoch"] == [0, 1, 2, 3, 4]  # curves are never deleted
    assert main(["verify", "--db", db]) == 0

    assert main(["gc", "--older-than", "1", "--db", db]) == 0  # nothing is a day old
    assert len(npz(Path(ckpt) / "failed")) == 3


# -- SIGKILL in the middle of rm, gc and rename ----------------------------------------


def kill_at(boundary: str, argv: list[str], cwd: Path) -> None:
    """Run ``python -m tracker ARGV``, stopped at ``boundary`` by the test hook, and SIGKILL it there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR"}
    env.update(TRACKER_TEST_PAUSE_AT=f"{boundary}:0", PYTHONPATH=str(Path(__file__).parents[1]))
    run_and_kill([sys.executable, "-m", "tracker", *argv], env, cwd)


def verify_then_gc(db: str, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str]]:
    """After a kill: `verify` finds nothing, or only what `gc` removes; after one `gc` it finds nothing."""
    status = main(["verify", "--db", db])
    found = findings(capsys.readouterr().out)
    assert status == (1 if found else 0)
    assert {kind for _, kind in found} <= {"orphan", "unfinished-rm", "leftover"}, found
    assert main(["gc", "--db", db]) == 0
    assert main(["verify", "--db", db]) == 0, capsys.readouterr().out
    return found


RM_KILLS = ["rm-after-mark", "rm-after-files"]
RENAME_KILLS = ["rename-after-link", "rename-after-commit"]


def test_every_cli_instant_is_killed_below():
    assert sorted(CLI_BOUNDARIES) == sorted([*RM_KILLS, "gc-after-retention", *RENAME_KILLS])


@pytest.mark.parametrize("boundary", RM_KILLS)
def test_sigkill_during_rm(record, db, ckpt, tmp_path, capsys, boundary):
    record("a", 3)
    record("b", 2)

    kill_at(boundary, ["rm", "a", "--yes", "--db", db], tmp_path)

    with pytest.raises(tracker.ResumeError, match="is being deleted"):  # no training on top of a half-deleted run
        tracker.track("a", db=db, checkpoint_dir=ckpt).start()
    assert ("a", "unfinished-rm") in verify_then_gc(db, capsys)
    assert [r.name for r in tracker.runs(db)] == ["b"]
    assert not (Path(ckpt) / "a").exists()
    assert invariants.check(db, "b") == [0, 1]


def test_sigkill_during_gc_retention(record, db, ckpt, tmp_path, capsys):
    record("a", 5, keep_last=None)

    kill_at("gc-after-retention", ["gc", "--older-than", "0", "--db", db], tmp_path)

    # The rows no longer point at the retired files: they are orphans now, and the next gc deletes them.
    assert invariants.check(db, "a") == [0, 1, 2, 3, 4]
    assert {kind for _, kind in verify_then_gc(db, capsys)} == {"orphan"}
    assert len(npz(Path(ckpt) / "a")) <= 2


@pytest.mark.parametrize("boundary", RENAME_KILLS)
def test_sigkill_during_rename(record, db, ckpt, tmp_path, capsys, boundary):
    record("a", 3, finish="interrupted")
    before = tracker.curves("a", db=db)

    kill_at(boundary, ["rename", "a", "b", "--db", db], tmp_path)

    name = "a" if boundary == "rename-after-link" else "b"  # renamed exactly when the transaction committed
    assert [r.name for r in tracker.runs(db)] == [name]
    assert invariants.check(db, name) == [0, 1, 2]
    found = verify_then_gc(db, capsys)
    assert ("leftover" in {kind for _, kind in found})
    assert tracker.curves(name, db=db) == before
    assert npz(Path(ckpt) / name) and not (Path(ckpt) / ("b" if name == "a" else "a")).exists()
    assert record(name, 4).initial_epoch == 3  # still resumes from its newest checkpoint


def test_a_copy_of_a_run_folder_is_not_taken_for_a_rename_leftover(record, db, ckpt, capsys):
    import shutil

    record("a", 2)
    copy = Path(ckpt) / "a-backup"
    shutil.copytree(Path(ckpt) / "a", copy)  # marker included: it names run a

    assert main(["verify", "--db", db]) == 0
    assert main(["gc", "--db", db]) == 0
    assert len(npz(copy)) == 2
    assert main(["rename", "a", "a-backup", "--db", db]) == 1
    assert "it exists and is not a leftover of this run" in capsys.readouterr().err
    assert len(npz(copy)) == 2 and [r.name for r in tracker.runs(db)] == ["a"]


def test_verify_gc_rename_and_rm_on_s3(postgres_db, s3_prefix, capsys):
    import fsspec
    import numpy as np

    from tests.conftest import loss_at
    from tracker import track

    run = track("s", db=postgres_db, checkpoint_dir=s3_prefix)
    run.start()
    for epoch in range(3):
        run.commit_epoch(epoch, loss_at(epoch), {"w": np.full(4, float(epoch))}, {})
    run.finish("completed")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    root = s3_prefix.removeprefix("s3://")
    fs.pipe_file(f"{root}/s/{ORPHAN}", b"x" * 10)

    assert main(["verify", "--db", postgres_db]) == 1
    assert findings(capsys.readouterr().out) == [("s", "orphan")]
    assert main(["gc", "--db", postgres_db]) == 0
    assert capsys.readouterr().out.endswith("freed 10 bytes (10 B) in 1 file(s)\n")
    assert main(["verify", "--db", postgres_db]) == 0

    # Object storage has no rename: the run is renamed, its objects stay where they are.
    assert main(["rename", "s", "t", "--db", postgres_db]) == 0
    assert f"checkpoints in {s3_prefix}/s" in capsys.readouterr().out
    assert main(["verify", "--db", postgres_db]) == 0
    assert main(["rm", "t", "--yes", "--db", postgres_db]) == 0
    assert tracker.runs(postgres_db) == []
    assert [p for p in fs.ls(f"{root}/s", detail=False, refresh=True) if p.endswith(".npz")] == []
