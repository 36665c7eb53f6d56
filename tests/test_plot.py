"""`python -m tracker.plot` and `tracker.plot.build_figure`: real SQLite, runs recorded without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tracker.errors import RunNotFoundError
from tracker.plot import build_figure
from tracker.plot.__main__ import main


def _labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("curves.png", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
        ("curves.svg", lambda b: b"<svg" in b),
        ("curves.pdf", lambda b: b.startswith(b"%PDF")),
        ("CURVES.PNG", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    ],
    ids=["png", "svg", "pdf", "upper-case-extension"],
)
def test_writes_format_from_extension(record, db, tmp_path, capsys, name, check):
    record("a", 4)
    out = tmp_path / name
    assert main(["a", "-o", str(out), "--db", db]) == 0
    assert check(out.read_bytes())
    assert capsys.readouterr().out.strip() == str(out)


def test_one_panel_per_family_val_dashed(record, db):
    record("a", 5)
    fig = build_figure(["a"], db=db)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    loss, accuracy = fig.axes
    lines = {line.get_label(): line for line in loss.get_lines()}
    assert lines["a loss"].get_linestyle() == "-"
    assert lines["a val_loss"].get_linestyle() == "--"
    assert lines["a loss"].get_color() == lines["a val_loss"].get_color()
    assert list(lines["a loss"].get_xdata()) == [0, 1, 2, 3, 4]
    assert "a accuracy" in _labels(accuracy)
    assert fig.get_suptitle() == "a"


def test_runs_overlaid_in_shared_panels(record, db):
    record("cnn-a", 3)
    record("cnn-b", 4)
    fig = build_figure(["cnn-a", "cnn-b"], db=db)
    assert len(fig.axes) == 2
    labels = _labels(fig.axes[0])
    assert {"cnn-a loss", "cnn-a val_loss", "cnn-b loss", "cnn-b val_loss"} <= set(labels)
    colors = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert colors["cnn-a loss"] != colors["cnn-b loss"]
    assert fig.get_suptitle() == "cnn-a, cnn-b"


def test_resume_point_marked_between_epochs(record, db):
    record("r", 3, finish=None)
    # The first attempt still looks alive in this process, so the second takes over.
    record("r", 6, force=True)
    fig = build_figure(["r"], db=db)
    for ax in fig.axes:
        resumed = [line for line in ax.get_lines() if line.get_label() == "r resumed"]
        assert len(resumed) == 1
        assert list(resumed[0].get_xdata()) == [2.5, 2.5]
        assert resumed[0].get_linestyle() == ":"


def test_best_epoch_starred_on_monitor_panel(record, db):
    record("a", 8)  # conftest's loss_at: val_loss falls until epoch 10, so epoch 7 is the best of 0..7
    fig = build_figure(["a"], db=db)
    loss, accuracy = fig.axes
    stars = [line for line in loss.get_lines() if line.get_label() == "a best val_loss"]
    assert len(stars) == 1 and stars[0].get_marker() == "*"
    assert (list(stars[0].get_xdata()), list(stars[0].get_ydata())) == ([7], [1.5 / 8 + 0.07])
    assert not any("best" in label for label in _labels(accuracy))


def test_metrics_selects_families(record, db):
    record("a", 3)
    fig = build_figure(["a"], db=db, metrics=["loss"])
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    assert set(_labels(fig.axes[0])) >= {"a loss", "a val_loss"}
    fig = build_figure(["a"], db=db, metrics=["val_loss"])
    assert "a loss" not in _labels(fig.axes[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["a", "-o", "curves.jpg"], ["'.jpg'", ".png, .svg, .pdf"]),
        (["a", "-o", "curves"], ["no extension", ".png"]),
        (["a", "-o", "missing/curves.png"], ["Output folder", "missing", "does not exist"]),
        (["aa", "-o", "curves.png"], ["No run named 'aa'", "Did you mean: 'a'"]),
        (["a", "-o", "curves.png", "--metrics", "f1"], ["No metric named 'f1'", "val_loss"]),
        (["a", "-o", "curves.png", "--db", "nowhere.db"], ["No database at", "nowhere.db"]),
    ],
    ids=["bad-extension", "no-extension", "missing-folder", "unknown-run", "unknown-metric", "missing-db"],
)
def test_errors_exit_1_with_one_line(record, db, tmp_path, capsys, args, words):
    record("a", 2)
    if "--db" not in args:
        args = [*args, "--db", db]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for word in words:
        assert word in err
    assert not (tmp_path / "nowhere.db").exists()
    assert not (tmp_path / "missing").exists()


def test_bad_extension_fails_before_reading_the_database(tmp_path, capsys):
    # The database does not exist: only the extension can be reported.
    assert main(["a", "-o", "curves.gif", "--db", str(tmp_path / "nope.db")]) == 1
    assert "'.gif'" in capsys.readouterr().err


def test_run_without_epochs_is_an_error(record, db, capsys):
    record("empty", 0)
    assert main(["empty", "-o", "curves.png", "--db", db]) == 1
    assert "no committed epochs" in capsys.readouterr().err


def test_unknown_run_raises_from_build_figure(record, db):
    record("cnn-a", 1)
    with pytest.raises(RunNotFoundError, match="Did you mean"):
        build_figure(["cnn-b"], db=db)


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["a"])  # no -o
    assert e.value.code == 2
    assert "-o" in capsys.readouterr().err


def test_cli_never_imports_tensorflow(record, db, tmp_path):
    record("a", 3)
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracker.plot", "a", "-o", str(out), "--db", db],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line for line in proc.stderr.splitlines() if "tensorflow" in line or "keras" in line]
    assert imported == []
    assert out.read_bytes().startswith(b"\x89PNG")


def test_more_than_two_runs_stack_panels_with_legend_beside(record, db):
    for name in ("a", "b", "c"):
        record(name, 3)
    fig = build_figure(["a", "b", "c"], db=db)
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes] == [(2, 1), (2, 1)]
    assert {"a loss", "b loss", "c loss"} <= set(_labels(fig.axes[0]))
    assert fig.axes[0].get_legend().get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1


# -- odd curves and a full disk (issue 10, items 17 and 18) ------------------


def test_an_all_nan_metric_is_left_out_with_a_warning(record, db):
    import math

    record("a", 3, metrics=lambda e: {"loss": 1.0 / (e + 1), "f1": math.nan})

    with pytest.warns(UserWarning, match=r"'f1' of run 'a' has no finite value"):
        fig = build_figure(["a"], db=db)

    assert [ax.get_title() for ax in fig.axes] == ["loss"]


def test_a_run_without_epochs_is_left_out_of_a_multi_run_plot_with_a_warning(record, db, tmp_path, capsys):
    record("a", 3)
    record("empty", 0)

    assert main(["a", "empty", "-o", str(tmp_path / "c.png"), "--db", db]) == 0

    # The command line shows a warning as one line, without the library's source line.
    assert capsys.readouterr().err == "warning: Run 'empty' has no committed epochs yet; it is left out of the plot.\n"
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    with pytest.warns(UserWarning, match=r"Run 'empty' has no committed epochs yet; it is left out"):
        fig = build_figure(["a", "empty"], db=db)
    assert {label.split()[0] for ax in fig.axes for label in _labels(ax)} == {"a"}


@pytest.mark.parametrize("previous", [None, b"<svg>old</svg>"], ids=["new-file", "existing-file"])
def test_plot_onto_a_full_disk_leaves_no_truncated_file(record, db, full_disk, capsys, previous):
    from tests.conftest import fill

    record("a", 5)
    target = full_disk / "curves.svg"
    if previous is not None:
        target.write_bytes(previous)
    fill(full_disk)

    assert main(["a", "-o", str(target), "--db", db]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err
    assert sorted(p.name for p in full_disk.iterdir()) == sorted(["filler", *(["curves.svg"] if previous else [])])
    if previous is not None:
        assert target.read_bytes() == previous


def test_by_step_draws_the_per_step_metrics_against_the_global_step(record, db, tmp_path, capsys):
    from tracker.records import StepValues

    run = record("a", 2, finish=None)
    rows = [StepValues(2, b, 20 + b, {"loss": 1.0 / b, "accuracy": 0.1 * b}) for b in range(1, 6)]
    run.commit_step(rows[-1], None, None, step_rows=rows)
    run.finish("completed")
    fig = build_figure(["a"], db=db, by="step")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert {ax.get_xlabel() for ax in fig.axes} == {"step"}
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [21, 22, 23, 24, 25] and line.get_ydata()[0] == 1.0
    out = tmp_path / "steps.png"
    assert main(["a", "-o", str(out), "--db", db, "--by", "step"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_by_step_on_a_run_that_logged_no_step_says_how_to_log_them(record, db, tmp_path, capsys):
    record("a", 2)
    assert main(["a", "-o", str(tmp_path / "s.png"), "--db", db, "--by", "step"]) == 1
    assert "log_every_steps" in capsys.readouterr().err
