"""The catalogue of runs, as people manage it: tags, notes, renaming, the two steps of deleting, and the rows of an import.

Renaming and deleting are refused while a run's writer holds its lease (`Writers._refuse_live`);
an import creates its run with one writer attempt (`tracker.store.writers._make_writer`), as training does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from tracker.records import ProcessInfo, RunRow, Status, now
from tracker.store.rows import _run_row
from tracker.store.tables import attempts, epochs, metrics, runs, step_metrics, steps, tags, trials
from tracker.store.writers import Writers, _make_writer


class Catalogue(Writers):
    """Tags, notes, rename, delete and import rows: one part of `tracker.store.Store`.

    Built on `Writers`, whose lease check refuses to rename or delete a run that is being written.
    """

    def annotations(self) -> dict[int, tuple[dict[str, str], str | None]]:
        """Every run's ``(tags, note)`` by run id."""
        with self._read() as conn:
            found: dict[int, tuple[dict[str, str], str | None]] = {
                run_id: ({}, note) for run_id, note in conn.execute(sa.select(runs.c.id, runs.c.note))
            }
            for run_id, key, value in conn.execute(sa.select(tags.c.run_id, tags.c.key, tags.c.value).order_by(tags.c.key)):
                found[run_id][0][key] = value
        return found

    def set_tags(self, run: RunRow, values: Mapping[str, str], remove: Sequence[str] = ()) -> dict[str, str]:
        """Set the tags ``values`` (replacing a key's old value) and remove the keys ``remove``; return all tags."""
        with self._write() as conn:
            keys = list(values) + list(remove)
            if keys:
                conn.execute(tags.delete().where(tags.c.run_id == run.id, tags.c.key.in_(keys)))
            if values:
                conn.execute(tags.insert(), [{"run_id": run.id, "key": k, "value": v} for k, v in values.items()])
            return dict(conn.execute(sa.select(tags.c.key, tags.c.value).where(tags.c.run_id == run.id).order_by(tags.c.key)).all())

    def set_note(self, run: RunRow, text: str | None) -> None:
        """Replace the run's note; None removes it."""
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run.id).values(note=text))

    def rename_run(self, run: RunRow, new_name: str, moved: tuple[str, str] | None = None) -> None:
        """Rename the run in ONE transaction, refused with `RunLockedError` while its writer is alive.

        ``moved=(old_folder, new_folder)`` also points the run's checkpoint folder and every recorded
        checkpoint path under ``old_folder`` at ``new_folder``: call it only once the files exist there.
        """
        t = now()
        with self._write() as conn:
            self._refuse_live(conn, run, "Rename it once it has stopped.")
            taken = conn.scalar(sa.select(runs.c.id).where(runs.c.name == new_name))
            if taken is not None:
                raise ValueError(f"A run named {new_name!r} already exists in {self.display}. Choose another name, or remove that run first.")
            values: dict[str, object] = {"name": new_name, "updated_at": t}
            if moved is not None:
                old, new = moved
                values["checkpoint_dir"] = new
                prefix = old.rstrip("/") + "/"
                for table in (epochs, steps):
                    rows = conn.execute(
                        sa.select(table.c.id, table.c.checkpoint_path).where(table.c.run_id == run.id, table.c.checkpoint_path.is_not(None))
                    ).all()
                    for row_id, path in rows:
                        if path.startswith(prefix):
                            conn.execute(table.update().where(table.c.id == row_id).values(checkpoint_path=new.rstrip("/") + "/" + path[len(prefix):]))
            conn.execute(runs.update().where(runs.c.id == run.id).values(**values))
            # A trial of a sweep follows its run: the sweep continues it under the new name.
            conn.execute(trials.update().where(trials.c.run_name == run.name).values(run_name=new_name))

    def begin_delete(self, run: RunRow, *, force: bool) -> RunRow:
        """First step of deleting a run: mark it ``deleting`` and no longer pointing at any file, in ONE transaction.

        After this commit every checkpoint of the run is an orphan (that `tracker.admin.runs` deletes next) and
        the old writer, if any, is fenced out. Refused with `RunLockedError` while the writer is alive, unless ``force``.
        """
        with self._write() as conn:
            if not force:
                self._refuse_live(conn, run, "Stop it first, or pass --force.")
            conn.execute(epochs.update().where(epochs.c.run_id == run.id).values(checkpoint_deleted=True))
            conn.execute(steps.update().where(steps.c.run_id == run.id).values(checkpoint_deleted=True))
            conn.execute(runs.update().where(runs.c.id == run.id).values(status=Status.DELETING, writer_attempt_id=None, updated_at=now()))
            return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().one())

    def finish_delete(self, run: RunRow) -> None:
        """Last step of deleting a run: remove all its rows in ONE transaction (its files must be gone already)."""
        with self._write() as conn:
            conn.execute(metrics.delete().where(metrics.c.run_id == run.id))
            conn.execute(step_metrics.delete().where(step_metrics.c.run_id == run.id))
            conn.execute(steps.delete().where(steps.c.run_id == run.id))
            conn.execute(epochs.delete().where(epochs.c.run_id == run.id))
            conn.execute(attempts.delete().where(attempts.c.run_id == run.id))
            conn.execute(tags.delete().where(tags.c.run_id == run.id))
            conn.execute(runs.delete().where(runs.c.id == run.id, runs.c.status == Status.DELETING))

    def begin_import(self, name: str, *, process: ProcessInfo, config: Mapping[str, object], monitor: str | None, mode: str) -> tuple[RunRow, int]:
        """Create a run for an imported history, with one attempt as its writer. Refused if the name exists.

        The run has no checkpoint folder (``checkpoint_dir`` is empty). `finish_attempt` with status
        ``imported`` marks the run and the attempt as imported once `commit_history` has written the curve.
        """
        t = now()
        with self._write() as conn:
            if conn.scalar(sa.select(runs.c.id).where(runs.c.name == name)) is not None:
                raise ValueError(f"A run named {name!r} already exists in {self.display}. Pass --replace to replace it, or choose another --name.")
            run_id = conn.execute(
                runs.insert().values(
                    name=name, uid=uuid.uuid4().hex, status=Status.RUNNING, created_at=t, updated_at=t,
                    config=json.dumps(dict(config), sort_keys=True), checkpoint_dir="", monitor=monitor, mode=mode,
                )
            ).inserted_primary_key[0]
            return _make_writer(conn, run_id, process, t)
