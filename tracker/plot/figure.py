"""Learning-curve plots of tracked runs, drawn headless. Never imports TensorFlow or Keras.

One panel per metric family (``loss`` with ``val_loss``), several runs overlaid,
each run's resume points and best epoch marked.

Example:
    ```
    python -m tracker.plot cnn-a cnn-b -o curves.png
    python -m tracker.plot cnn-a -o report/cnn-a.pdf --db runs.db --metrics loss
    python -m tracker.plot cnn-a -o steps.png --by step      # the per-step metrics of log_every_steps
    ```
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.durable import replace_atomically
from tracker.errors import TrackerError
from tracker.store import open_store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Output formats, chosen by the output file's extension.
FORMATS = ("png", "svg", "pdf")
_PANEL_SIZE = (6.4, 4.0)  # inches, matplotlib's default figure size per panel
_MAX_COLUMNS = 2
_LEGEND_WIDTH = 2.8  # inches added beside a panel whose legend goes outside it
_LEGEND_ROW = 0.2  # inches per legend entry at fontsize "small"


#: The columns of a curve that are its x axis, not metrics.
_AXES = ("epoch", "step")


@dataclass(frozen=True)
class _RunData:
    name: str
    curve: dict[str, list]
    #: The curve's x column: "epoch", or "step" for the per-step curve.
    x: str
    #: Epochs at which a later attempt picked the run up again.
    resumed_at: list[int]
    monitor: str | None
    best_epoch: int | None
    best_value: float | None


def _family(metric: str) -> str:
    """The panel a metric goes to: ``val_loss`` and ``loss`` both go to ``loss``."""
    return metric.removeprefix("val_")


def plot(
    runs: list[str],
    output: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
    metrics: list[str] | None = None,
    by: str = "epoch",
) -> Path:
    """Draw the learning curves of ``runs`` into one image file.

    Example:
        >>> from tracker.plot import plot                          # doctest: +SKIP
        >>> plot(["cnn-a", "cnn-b"], "curves.png", db="runs.db")   # doctest: +SKIP
        PosixPath('curves.png')

    Args:
        runs: Names of the runs to overlay.
        output: The file to write; its extension (``.png``, ``.svg`` or ``.pdf``) picks the format.
        db: A SQLite file path or a SQLAlchemy URL. Defaults to ``$TRACKER_DB``, else ``./tracker.db``.
        metrics: Only these metrics; a family name such as ``loss`` also selects ``val_loss``.
            Defaults to all.
        by: ``"epoch"``, or ``"step"`` for the running batch metrics that ``log_every_steps`` recorded.
            Defaults to ``"epoch"``.

    Returns:
        The path written.

    Raises:
        ValueError: The extension is not one of `FORMATS`, or the output folder does not exist.
        RunNotFoundError: A run does not exist; the message suggests close names.
        TrackerError: A run has nothing to plot yet, or the file cannot be written.
    """
    path = Path(output)
    fmt = _check_output(path)
    figure = build_figure(runs, db=db, metrics=metrics, by=by)
    try:
        # Never a truncated image under the asked name, even on a full disk.
        with replace_atomically(path) as f:
            figure.savefig(f, format=fmt)
    except OSError as e:
        raise TrackerError(f"Cannot write {path}: {e.strerror or e}.") from e
    return path


def _check_output(path: Path) -> str:
    # Checked before reading the database or drawing, so a typo fails fast.
    fmt = path.suffix.lower().removeprefix(".")
    if fmt not in FORMATS:
        allowed = ", ".join("." + f for f in FORMATS)
        got = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise ValueError(f"Cannot write {str(path)!r}: it has {got}. Expected one of {allowed} (case-insensitive).")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"Output folder {str(folder)!r} does not exist. Create it first, or pass another path.")
    if path.is_dir():
        raise ValueError(f"Output {str(path)!r} is a folder. Pass a file path such as {str(path / 'curves.png')!r}.")
    return fmt


def _load(names: list[str], db: str | os.PathLike[str] | None, by: str) -> list[_RunData]:
    """The runs' curves; a run without epochs (or logged steps) is left out with a warning, unless no run has any."""
    store = open_store(db, create=False)
    try:
        data, empty = [], []
        for name in dict.fromkeys(names):  # a name given twice is drawn once
            run = store.get_run(name)
            resumed = sorted({a.initial_epoch for a in store.attempts(run.id) if a.initial_epoch > 0})
            if by == "step":
                # Resume points and the best epoch are marked on the epoch axis only.
                curve = store.step_curve(run.id)
                curve.pop("epoch")
                run_data = _RunData(name, curve, "step", [], None, None, None)
            else:
                # Read after the run row, so the curve holds at least the best epoch the row names.
                curve = store.live_curve(run.id)
                run_data = _RunData(name, curve, "epoch", resumed, run.monitor, run.best_epoch, run.best_value)
            if curve[by]:
                data.append(run_data)
            else:
                empty.append(name)
    finally:
        store.close()
    what = "logged steps (track with log_every_steps=N to record them)" if by == "step" else "committed epochs"
    if not data:
        raise TrackerError(f"Run(s) {', '.join(map(repr, empty))} have no {what} yet; nothing to plot.")
    for name in empty:
        # stacklevel: _load <- build_figure <- the caller.
        warnings.warn(f"Run {name!r} has no {what} yet; it is left out of the plot.", stacklevel=3)
    return data


def _drawable(data: list[_RunData]) -> list[_RunData]:
    """The runs with each metric that has no finite value left out, with a warning: it would draw nothing."""
    kept = []
    for d in data:
        blank = [m for m, values in d.curve.items() if m not in _AXES and not any(math.isfinite(v) for v in values)]
        for m in blank:
            warnings.warn(f"Metric {m!r} of run {d.name!r} has no finite value (all NaN or infinite); it is not drawn.", stacklevel=3)
        kept.append(dataclasses.replace(d, curve={m: v for m, v in d.curve.items() if m not in blank}))
    return kept


def _check_metrics(data: list[_RunData], metrics: list[str] | None) -> None:
    """Raise `ValueError` if ``metrics`` names a metric that none of the runs recorded."""
    names = sorted({m for d in data for m in d.curve if m not in _AXES})
    unknown = [m for m in metrics or () if m not in names and m not in {_family(n) for n in names}]
    if unknown:
        raise ValueError(f"No metric named {', '.join(map(repr, unknown))} in these runs. Available: {', '.join(names)}.")


def _families(data: list[_RunData], metrics: list[str] | None) -> dict[str, list[str]]:
    """Each panel's family with its metric names, ``loss`` first, then alphabetical."""
    names = sorted({m for d in data for m in d.curve if m not in _AXES})
    if metrics is not None:
        names = [n for n in names if n in metrics or _family(n) in metrics]
    if not names:
        raise TrackerError(f"Run(s) {', '.join(d.name for d in data)} recorded no metric with a finite value; nothing to plot.")
    panels: dict[str, list[str]] = {}
    for n in sorted(names, key=lambda n: (_family(n) != "loss", _family(n), n.startswith("val_"))):
        panels.setdefault(_family(n), []).append(n)
    return panels


def build_figure(
    runs: list[str],
    *,
    db: str | os.PathLike[str] | None = None,
    metrics: list[str] | None = None,
    by: str = "epoch",
) -> Figure:
    """The learning-curve figure of ``runs``, not yet saved: one axes per metric family.

    Example:
        >>> from tracker.plot import build_figure                        # doctest: +SKIP
        >>> fig = build_figure(["cnn-a"], db="runs.db")                  # doctest: +SKIP
        >>> [ax.get_title() for ax in fig.axes]                          # doctest: +SKIP
        ['loss', 'accuracy']

    Args:
        runs: Names of the runs to overlay.
        db: A SQLite file path or a SQLAlchemy URL. Defaults to ``$TRACKER_DB``, else ``./tracker.db``.
        metrics: Only these metrics; a family name also selects its ``val_`` metric. Defaults to all.
        by: ``"epoch"``, or ``"step"`` for the per-step curves. Defaults to ``"epoch"``.
    """
    if not runs:
        raise ValueError("No runs to plot. Pass at least one run name.")
    if by not in _AXES:
        raise ValueError(f"Invalid value for argument `by`. Received: by={by!r}. Expected 'epoch' or 'step'.")
    data = _load(runs, db, by)
    _check_metrics(data, metrics)
    data = _drawable(data)
    panels = _families(data, metrics)
    # Figure without pyplot: no global state, no GUI backend, safe on a headless server.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Beyond two runs a legend inside the axes hides the curves: stack the panels and put it beside them.
    beside = len(data) > 2
    columns = 1 if beside else min(len(panels), _MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(layout="constrained")
    figure.suptitle(", ".join(d.name for d in data))
    entries = 0
    for i, (fam, names) in enumerate(panels.items()):
        ax = figure.add_subplot(rows, columns, i + 1)
        for j, d in enumerate(data):
            _draw_run(ax, d, fam, names, color=f"C{j % 10}")
        ax.set_title(fam)
        ax.set_xlabel(by)
        ax.set_ylabel(fam)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if beside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize="small")
        else:
            ax.legend(loc="best", fontsize="small")
        entries = max(entries, len(ax.get_legend_handles_labels()[1]))
    width, height = _PANEL_SIZE
    if beside:
        width, height = width + _LEGEND_WIDTH, max(height, _LEGEND_ROW * entries + 0.8)
    figure.set_size_inches(width * columns, height * rows)
    return figure


def _draw_run(ax: Axes, d: _RunData, fam: str, names: list[str], *, color: str) -> None:
    epochs = d.curve[d.x]
    for name in names:
        if name in d.curve:
            ax.plot(epochs, d.curve[name], color=color, linestyle="--" if name.startswith("val_") else "-",
                    marker="." if len(epochs) < 2 else None, label=f"{d.name} {name}")
    for k, epoch in enumerate(d.resumed_at):
        # Between the last epoch kept and the first one the resumed attempt trained.
        ax.axvline(epoch - 0.5, color=color, linestyle=":", linewidth=1,
                   label=f"{d.name} resumed" if k == 0 else None)
    if d.monitor in names and d.best_epoch is not None and d.best_value is not None:
        ax.plot([d.best_epoch], [d.best_value], linestyle="none", marker="*", markersize=12,
                color=color, markeredgecolor="black", zorder=3, label=f"{d.name} best {d.monitor}")
