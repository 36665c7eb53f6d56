"""KerasTuner's own files, written all at once or not at all while `tracker.track_tuner` is active.

KerasTuner 1.4 writes ``oracle.json``, each ``trial.json`` and the tuner's file in place, with no
temporary file and no fsync, so a kill in the middle of a write leaves a truncated JSON file that
breaks the next reload (keras-team/keras-tuner#987, #439, #835), and a trial's best-epoch weights
(``checkpoint.weights.h5``) the same way. While the context is active, every such write under the
tuner's project folder goes through `tracker.durable` instead: the bytes go to a temporary file
beside the target, are fsynced, and replace the target with one rename. Writes elsewhere, and to
remote storage (``gs://...``, which KerasTuner writes through ``tf.io.gfile``), go KerasTuner's way.

Two test hooks (`tracker.faults`) name the instants a test stops the process at:
``tuner-during-write:<file>#<n>``, halfway through the n-th write of ``<file>`` in this process
(a path under the project folder, such as ``oracle.json`` or ``trial_1/trial.json``), and
``tuner-before-rename:<file>#<n>`` for the weights, once the temporary file is complete.
"""

from __future__ import annotations

import collections
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracker import durable
from tracker.faults import pause_point
from tracker.keras.tuner import internals


class StateFiles:
    """The durable writes of one tuner's project folder, installed by `install` and taken back by its undo.

    Example:
        ```python
        undo = StateFiles(tuner.project_dir).install()
        try:
            tuner.search(x, y, epochs=5)
        finally:
            undo()
        ```
    """

    def __init__(self, project_dir: str | os.PathLike[str]) -> None:
        self._project = Path(os.path.abspath(project_dir))
        self._writes: collections.Counter[str] = collections.Counter()

    def install(self) -> Callable[[], None]:
        """Route KerasTuner's state and weight writes through durable writes; returns the undo."""
        undos = [internals.replace_save_json(self._save_json), internals.replace_best_epoch_save(self._save_weights)]

        def undo() -> None:
            for u in reversed(undos):
                u()

        return undo

    def _ours(self, path: str | os.PathLike[str]) -> str | None:
        """``path`` relative to the project folder, or None for a path elsewhere or on remote storage."""
        if "://" in str(path):
            return None
        full = Path(os.path.abspath(path))
        return full.relative_to(self._project).as_posix() if full.is_relative_to(self._project) else None

    def _label(self, relative: str) -> str:
        self._writes[relative] += 1
        return f"{relative}#{self._writes[relative]}"

    def _save_json(self, original: Callable[[str, Any], str], path: str, obj: Any) -> str:
        relative = self._ours(path)
        if relative is None:
            return original(path, obj)
        text = json.dumps(obj)  # what KerasTuner's save_json writes, and returns
        data = text.encode()
        label = self._label(relative)
        with durable.replace_atomically(path) as f:
            f.write(data[: len(data) // 2])
            f.flush()
            pause_point("tuner-during-write", label)
            f.write(data[len(data) // 2:])
        return text

    def _save_weights(self, callback: Any, original: Callable[[], None]) -> None:
        relative = self._ours(callback.filepath)
        if relative is None:
            original()
            return
        final = Path(callback.filepath)
        # Keras saves weights only to a name ending in .weights.h5.
        temp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp.weights.h5")
        try:
            callback.model.save_weights(str(temp))
            durable.fsync_path(temp)
            pause_point("tuner-before-rename", self._label(relative))
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        durable.fsync_path(final.parent)
