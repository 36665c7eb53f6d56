"""Sweeps and their trials: one part of `tracker.store.Store`.

A trial's run holds its curve, its checkpoints and its lease; the trial row holds what the run cannot:
the parameters before the run exists, the objective's value, and failures that left no run behind.
A trial's outcome is written only while its worker's attempt is still the run's writer (`record_trial`),
so a worker that lost the run (a lapsed lease, a takeover) cannot overwrite the outcome of the one that has it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from tracker.records import SweepRow, TrialRow, TrialState, now
from tracker.redact import redact
from tracker.store.rows import _attempt_row, _aware, _run_row, insert_for
from tracker.store.session import Session
from tracker.store.tables import attempts, runs, sweeps, trials


class Sweeps(Session):
    """Sweeps and their trials: one part of `tracker.store.Store`."""

    def ensure_sweep(self, name: str, kind: str, spec: Mapping[str, Any]) -> SweepRow:
        """The sweep called ``name``, created with ``kind`` and ``spec`` if it does not exist yet.

        An existing sweep is returned as recorded: the caller compares its kind and spec with what it asked for.
        Many workers may create the same sweep at once: one inserts it, and all get that one.
        """
        with self._write() as conn:
            values = {"name": name, "kind": kind, "spec": json.dumps(spec, sort_keys=True), "created_at": now()}
            conn.execute(insert_for(conn)(sweeps).values(values).on_conflict_do_nothing(index_elements=["name"]))
            row = conn.execute(sa.select(sweeps).where(sweeps.c.name == name)).mappings().one()
        return _sweep_row(row)

    def update_sweep_spec(self, sweep_id: int, spec: Mapping[str, Any]) -> None:
        """Record a spec that only extends the old one (more trials of the same space)."""
        with self._write() as conn:
            conn.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(spec=json.dumps(spec, sort_keys=True)))

    def find_sweep(self, name: str) -> SweepRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(sweeps).where(sweeps.c.name == name)).mappings().first()
        return _sweep_row(row) if row is not None else None

    def sweeps(self) -> list[SweepRow]:
        """Every sweep, oldest first."""
        with self._read() as conn:
            return [_sweep_row(r) for r in conn.execute(sa.select(sweeps).order_by(sweeps.c.id)).mappings()]

    def add_trials(self, sweep_id: int, new: Sequence[tuple[int, str, Mapping[str, Any]]]) -> None:
        """Add the trials ``(number, run_name, params)`` that the sweep does not have yet; those it has stay as they are.

        Safe when many workers add the same trials at once: the primary key settles who inserts each.

        Raises:
            ValueError: A run of one of these names exists already outside this sweep.
        """
        t = now()
        with self._write() as conn:
            have = set(conn.scalars(sa.select(trials.c.number).where(trials.c.sweep_id == sweep_id)))
            missing = [(n, run_name, params) for n, run_name, params in new if n not in have]
            if not missing:
                return
            names = [run_name for _, run_name, _ in missing]
            owned = set(conn.scalars(sa.select(trials.c.run_name).where(trials.c.run_name.in_(names))))
            foreign = sorted(set(conn.scalars(sa.select(runs.c.name).where(runs.c.name.in_(names)))) | owned)
            if foreign:
                sweep = conn.scalar(sa.select(sweeps.c.name).where(sweeps.c.id == sweep_id))
                raise ValueError(
                    f"Cannot add trials to sweep {sweep!r}: a run named {foreign[0]!r} already exists in {self.display} and is "
                    "not one of its trials. Choose another sweep name, or rename or remove that run first "
                    f"(tracker rename {foreign[0]} NEW_NAME)."
                )
            rows = [
                {"sweep_id": sweep_id, "number": n, "run_name": run_name, "params": json.dumps(dict(params)),
                 "state": TrialState.PENDING, "failures": 0, "updated_at": t}
                for n, run_name, params in missing
            ]
            insert = insert_for(conn)(trials).values(rows).on_conflict_do_nothing(index_elements=["sweep_id", "number"])
            conn.execute(insert)

    def trials(self, sweep_id: int, number: int | None = None) -> list[TrialRow]:
        """The sweep's trials in number order (only trial ``number``, if given), each with its run and the run's
        newest attempt once the run exists."""
        which = sa.select(trials).where(trials.c.sweep_id == sweep_id).order_by(trials.c.number)
        if number is not None:
            which = which.where(trials.c.number == number)
        with self._read() as conn:
            sweep = conn.scalar(sa.select(sweeps.c.name).where(sweeps.c.id == sweep_id))
            rows = conn.execute(which).mappings().all()
            names = [r["run_name"] for r in rows]
            found = {r["name"]: _run_row(r) for r in conn.execute(sa.select(runs).where(runs.c.name.in_(names))).mappings()}
            run_ids = [r.id for r in found.values()]
            newest = sa.select(sa.func.max(attempts.c.id)).where(attempts.c.run_id.in_(run_ids)).group_by(attempts.c.run_id)
            latest = {
                r["run_id"]: _attempt_row(r)
                for r in conn.execute(sa.select(attempts).where(attempts.c.id.in_(newest.scalar_subquery()))).mappings()
            }
        result = []
        for r in rows:
            run = found.get(r["run_name"])
            result.append(
                TrialRow(
                    sweep=sweep, number=r["number"], run_name=r["run_name"], params=json.loads(r["params"]),
                    state=TrialState(r["state"]), value=r["value"], error=r["error"], failures=r["failures"],
                    updated_at=_aware(r["updated_at"]), run=run, attempt=None if run is None else latest.get(run.id),
                )
            )
        return result

    def record_trial(
        self, sweep_id: int, number: int, attempt_id: int, state: TrialState, *, value: float | None = None, error: str | None = None
    ) -> bool:
        """Record how a trial ended, only if ``attempt_id`` is still the writer of the trial's run. Returns whether it was.

        ``failed`` also counts one more failure.
        """
        writer = (
            sa.select(runs.c.writer_attempt_id).where(runs.c.name == trials.c.run_name).scalar_subquery()
        )
        values: dict[str, object] = {"state": state, "value": value, "error": None if error is None else redact(error), "updated_at": now()}
        if state == TrialState.FAILED:
            values["failures"] = trials.c.failures + 1
        with self._write() as conn:
            done = conn.execute(
                trials.update().where(trials.c.sweep_id == sweep_id, trials.c.number == number, writer == attempt_id).values(**values)
            )
            return done.rowcount == 1

    def sweep_of_runs(self) -> dict[str, tuple[str, int]]:
        """``{run_name: (sweep name, trial number)}`` for every run that is a trial of a sweep."""
        with self._read() as conn:
            rows = conn.execute(sa.select(trials.c.run_name, sweeps.c.name, trials.c.number).join(sweeps, sweeps.c.id == trials.c.sweep_id))
            return {run_name: (sweep, number) for run_name, sweep, number in rows}


def _sweep_row(r: Mapping) -> SweepRow:
    return SweepRow(id=r["id"], name=r["name"], kind=r["kind"], spec=json.loads(r["spec"]), created_at=_aware(r["created_at"]))
