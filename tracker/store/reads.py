"""What the store reads back: runs, attempts, checkpoints, curves, and the web view's cheap polls.

Curve reads take one range scan of a covering index per metric, and the long ones run on the
driver's own cursor (`_tuples`), so that a curve of many epochs costs no Row object per value.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import sqlalchemy as sa

from tracker.errors import RunNotFoundError
from tracker.records import AttemptRow, EpochRow, RunRow
from tracker.store.rows import _attempt_row, _epoch_row, _kept, _kept_steps, _py_value, _run_row, _step_row
from tracker.store.session import Session
from tracker.store.tables import attempts, epochs, metrics, runs, step_metrics, steps


class Reads(Session):
    """Every read of runs, attempts, checkpoints and curves: one part of `tracker.store.Store`."""

    # -- runs -------------------------------------------------------------

    def run_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.scalars(sa.select(runs.c.name).order_by(runs.c.name)))

    def find_run(self, name: str) -> RunRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.name == name)).mappings().first()
        return _run_row(row) if row else None

    def get_run(self, name: str) -> RunRow:
        """The run called ``name``; `RunNotFoundError`, with close names, if there is none."""
        found = self.find_run(name)
        if found is None:
            suggestions = difflib.get_close_matches(name, self.run_names(), n=3, cutoff=0.5)
            raise RunNotFoundError(name, self.display, suggestions)
        return found

    def list_runs(self) -> list[tuple[RunRow, AttemptRow | None]]:
        """Every run, oldest first, with its newest attempt."""
        with self._read() as conn:
            run_rows = [_run_row(r) for r in conn.execute(sa.select(runs).order_by(runs.c.created_at, runs.c.id)).mappings()]
            newest = (
                sa.select(sa.func.max(attempts.c.id)).group_by(attempts.c.run_id).scalar_subquery()
            )
            latest = {
                r["run_id"]: _attempt_row(r)
                for r in conn.execute(sa.select(attempts).where(attempts.c.id.in_(newest))).mappings()
            }
        return [(r, latest.get(r.id)) for r in run_rows]

    def attempts(self, run_id: int) -> list[AttemptRow]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
            ).mappings()
            return [_attempt_row(r) for r in rows]

    # -- checkpoints -------------------------------------------------------

    def checkpoints(self, run_id: int, *, live_only: bool = True) -> list[EpochRow]:
        """Checkpoints whose file is recorded and not deleted, at epoch ends and inside epochs, newest `position` first."""
        with self._read() as conn:
            rows = [_epoch_row(r) for r in conn.execute(_kept(run_id)).mappings()]
            rows += [_step_row(r) for r in conn.execute(_kept_steps(run_id)).mappings()]
        rows.sort(key=lambda r: r.position, reverse=True)
        # Filtered here, not in SQL, so that the read stays on the small index of kept checkpoints.
        return [r for r in rows if not r.superseded] if live_only else rows

    def referenced_paths(self, run_id: int) -> set[str]:
        """Checkpoint files that some row still points at."""
        with self._read() as conn:
            paths = set(conn.scalars(_kept(run_id).with_only_columns(epochs.c.checkpoint_path)))
            return paths | set(conn.scalars(_kept_steps(run_id).with_only_columns(steps.c.checkpoint_path)))

    # -- curves ------------------------------------------------------------

    def live_curve(self, run_id: int, names: Sequence[str] | None = None) -> dict[str, list]:
        """The run's live curve as columns, read in one transaction.

        Each metric is one range scan of the covering index ``ix_metrics_curve``; a metric
        missing at some epoch reads NaN there.
        """
        with self._read() as conn:
            epoch_list = [r[0] for r in _tuples(conn, sa.select(epochs.c.epoch).where(
                epochs.c.run_id == run_id, epochs.c.superseded == sa.false()).order_by(epochs.c.epoch))]
            discovered = names is None
            if discovered:
                names = self._metric_names(conn, run_id)
            columns: dict[str, list] = {"epoch": epoch_list}
            position = None
            for name in names:
                rows = _tuples(conn, self._curve_query(run_id, name))
                if not rows and discovered:
                    continue  # logged only in superseded epochs
                at = [r[0] for r in rows]
                values = [math.nan if r[1] is None else r[1] for r in rows]
                if at != epoch_list:
                    position = position or {e: i for i, e in enumerate(epoch_list)}
                    column = [math.nan] * len(epoch_list)
                    for e, v in zip(at, values):
                        column[position[e]] = v
                    values = column
                columns[name] = values
        return columns

    def step_curve(self, run_id: int, names: Sequence[str] | None = None) -> dict[str, list]:
        """The live per-step metrics as columns ``{"step", "epoch", <metric>...}``, in step order, in one read.

        A metric missing at some logged step reads NaN there.
        """
        query = (
            sa.select(step_metrics.c.step, steps.c.epoch, step_metrics.c.name, step_metrics.c.value)
            .select_from(step_metrics.join(steps, steps.c.id == step_metrics.c.step_id))
            .where(step_metrics.c.run_id == run_id, step_metrics.c.superseded == sa.false())
            .order_by(step_metrics.c.step)
        )
        if names is not None:
            query = query.where(step_metrics.c.name.in_(list(names)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        wanted = list(names) if names is not None else sorted({r[2] for r in rows})
        columns: dict[str, list] = {"step": [], "epoch": [], **{n: [] for n in wanted}}
        for step, epoch, name, value in rows:
            if not columns["step"] or columns["step"][-1] != step:
                columns["step"].append(step)
                columns["epoch"].append(epoch)
                for n in wanted:
                    columns[n].append(math.nan)
            columns[name][-1] = _py_value(value)
        return columns

    @staticmethod
    def _curve_query(run_id: int, name: str) -> sa.Select:
        return (
            sa.select(metrics.c.epoch, metrics.c.value)
            .where(metrics.c.run_id == run_id, metrics.c.name == name, metrics.c.superseded == sa.false())
            .order_by(metrics.c.epoch)
        )

    @staticmethod
    def _metric_names(conn: sa.Connection, run_id: int) -> list[str]:
        """Every metric name the run ever logged, superseded rows included.

        A recursive skip scan over the index: one probe per distinct name instead of
        reading every metric row of the run.
        """
        names = sa.select(sa.func.min(metrics.c.name).label("name")).where(metrics.c.run_id == run_id).cte("names", recursive=True)
        following = sa.select(
            sa.select(sa.func.min(metrics.c.name)).where(metrics.c.run_id == run_id, metrics.c.name > names.c.name).scalar_subquery()
        ).where(names.c.name.is_not(None))
        names = names.union_all(following)
        return list(conn.scalars(sa.select(names.c.name).where(names.c.name.is_not(None))).all())

    def metric_curve(self, run_id: int, name: str) -> tuple[list[int], list[float]]:
        """One live metric's (epochs, values): a single range scan of ``ix_metrics_curve``."""
        with self._read() as conn:
            rows = conn.execute(self._curve_query(run_id, name)).all()
        return [r[0] for r in rows], [_py_value(r[1]) for r in rows]

    def all_epoch_metrics(self, run_id: int) -> list[tuple[int, int, bool, str, float]]:
        """Every (epoch row id, epoch, superseded, name, value) of the run, superseded rows included."""
        q = (
            sa.select(epochs.c.id, epochs.c.epoch, epochs.c.superseded, metrics.c.name, metrics.c.value)
            .select_from(epochs.outerjoin(metrics, metrics.c.epoch_id == epochs.c.id))
            .where(epochs.c.run_id == run_id)
            .order_by(epochs.c.epoch, epochs.c.id)
        )
        with self._read() as conn:
            return [(r[0], r[1], bool(r[2]), r[3], _py_value(r[4])) for r in conn.execute(q)]

    # -- reads for the web view (tracker.serve) ----------------------------

    def metric_series(
        self, run_id: int, names: Sequence[str] | None = None, *, after: int | None = None
    ) -> dict[str, list[tuple[int, float | None]]]:
        """Each live metric's ``(epoch, value)`` rows in epoch order, NaN as None, in ONE short transaction.

        One range scan of ``ix_metrics_curve`` per metric, read as plain tuples: the web view's
        curve API downsamples these itself, so it reads no epoch column it would throw away.

        Args:
            run_id: The run's id.
            names: Only these metrics. Defaults to every metric the run logged.
            after: Only epochs after this one (the rows a live page has not seen yet). Defaults to None.
        """
        with self._read() as conn:
            names = self._metric_names(conn, run_id) if names is None else names
            series = {}
            for name in names:
                query = self._curve_query(run_id, name)
                if after is not None:
                    query = query.where(metrics.c.epoch > after)
                series[name] = _tuples(conn, query)
            return series

    def metric_names(self, run_id: int) -> list[str]:
        """Every metric name the run ever logged, superseded rows included, in name order."""
        with self._read() as conn:
            return self._metric_names(conn, run_id)

    def run_stamps(self) -> dict[str, tuple[tuple, AttemptRow | None]]:
        """For each run, a tuple that changes whenever its summary does, and, if its row says running, its
        newest attempt (whose liveness decides whether it is really running), in ONE short transaction.

        Far cheaper than `list_runs` (no config, no attempt of a finished run): what a poller reads
        every half second to learn which runs changed.
        """
        summary = (runs.c.status, runs.c.last_epoch, runs.c.best_epoch, runs.c.best_value, runs.c.target_epochs,
                   runs.c.updated_at, runs.c.writer_attempt_id, runs.c.monitor)
        with self._read() as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.name, *summary)).all()
            running = [r.id for r in rows if r.status == "running"]
            newest: dict[int, AttemptRow] = {}
            if running:
                ids = sa.select(sa.func.max(attempts.c.id)).where(attempts.c.run_id.in_(running)).group_by(attempts.c.run_id)
                newest = {a["run_id"]: _attempt_row(a) for a in conn.execute(sa.select(attempts).where(attempts.c.id.in_(ids))).mappings()}
        return {r.name: (tuple(r[2:]), newest.get(r.id)) for r in rows}


def _tuples(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """Run ``query`` on the driver's own cursor: plain tuples, without a Row object per row.

    For the long, simple reads of a curve (ints and floats only) this halves the time.
    """
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = tuple(params[k] for k in compiled.positiontup) if compiled.positional else params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return cursor.fetchall()
    finally:
        cursor.close()
