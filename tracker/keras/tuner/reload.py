"""Finishing KerasTuner's reload of a project, where a kill between two of its state writes left it short.

Each of KerasTuner's state files is replaced whole while `tracker.track_tuner` is active
(`tracker.keras.tuner.state_files`), but a trial's start and end each write two files, one after
the other, and its first trial's end writes the file that makes KerasTuner reload at all. A kill
between them leaves a project that KerasTuner 1.4.8 reloads into a different search:

- killed during the first trial, before the tuner's ``<tuner_id>.json`` exists: the project is not
  reloaded, and the search starts over (with other trials, if the oracle's seed was not set);
- killed after a new trial's ``trial.json`` and before ``oracle.json``: the trial is loaded but never
  run, and the next one is drawn with its values under another id;
- killed after a trial's end wrote its ``trial.json`` and before ``oracle.json`` dropped it from the
  ongoing trials: the completed trial is run again.

`finish_reload` puts back, from the files that did reach the disk, the state of the oracle that
the lost write would have saved, so that the search goes on with the same trials in the same order.
"""

from __future__ import annotations

import logging
import os

import keras_tuner

from tracker.keras.tuner import internals

log = logging.getLogger(__name__)

_ENDED = ("COMPLETED", "FAILED")


def finish_reload(tuner: keras_tuner.Tuner) -> None:
    """Bring the oracle of a reloaded (or not reloaded) project to the state its last trial start or end saved.

    Example:
        ```python
        tuner = keras_tuner.RandomSearch(build, "val_loss", max_trials=4, directory="kt", project_name="mlp")
        finish_reload(tuner)      # what track_tuner does as it opens
        ```
    """
    oracle = tuner.oracle
    if not os.path.exists(internals.tuner_file(tuner)) and os.path.exists(internals.oracle_file(oracle)):
        log.info("KerasTuner project %s was killed in its first trial: reloading its oracle", tuner.project_dir)
        oracle.reload()
    queue = internals.retry_queue(oracle)
    for trial_id in [t for t in queue if oracle.trials[t].status in _ENDED]:
        # Its end reached trial.json, not oracle.json: end it in the oracle as Oracle.end_trial did.
        queue.remove(trial_id)
        if trial_id not in oracle.end_order:
            trial = oracle.trials[trial_id]
            oracle.update_space(trial.hyperparameters)
            internals.count_run(oracle, trial_id)
            oracle.end_order.append(trial_id)
        log.info("KerasTuner trial %s had ended before the kill: not run again", trial_id)
    for trial_id, trial in oracle.trials.items():
        if trial_id not in oracle.start_order and trial.status == "RUNNING":
            # Its start reached trial.json, not oracle.json: start it, and mark its values as drawn, so that the
            # oracle's next draw (from the seed state before it) skips them and goes on as it would have.
            internals.mark_tried(oracle, trial)
            oracle.start_order.append(trial_id)
            queue.append(trial_id)
            log.info("KerasTuner trial %s had started before the kill: it runs now", trial_id)
