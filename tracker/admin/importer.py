"""``tracker import``: bring a history that other tools wrote into the database as a run.

Formats (``--format``; detected from the content when omitted):

- ``history-json``: a JSON list of per-epoch objects, ``[{"epoch": 0, "loss": 0.9, ...}, ...]``, as the
  ``history.json`` of the callback in the seed article writes it;
- ``keras-json``: Keras ``History.history`` saved as JSON, a dict of equal-length lists;
- ``csv``: a ``keras.callbacks.CSVLogger`` file (``epoch`` column, ``NA`` for a missing value), including
  a header repeated in the middle of the file, as appending to an existing log does;
- ``tensorboard``: a folder of TensorBoard event files (Keras's ``TensorBoard`` callback: ``train/`` and
  ``validation/``, tags ``epoch_loss`` ...; or any scalars with the epoch as step). Needs the
  ``tensorboard`` package: ``pip install 'tracker[tensorboard]'``.

A restarted training run logs again from the epoch it restarted at. When an epoch number is not
greater than the one before it, the later rows replace the earlier history from that epoch on,
as a resume does in tracker itself; the import says how many epochs were replaced.

Everything is parsed and checked before anything is written; the curve is then committed in
one transaction.

Example:
    >>> records, note = parse("training_checkpoints/history.json")            # doctest: +SKIP
    >>> import_history(store, "seed-cnn", records)                               # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from tracker import settings
from tracker.errors import TrackerError
from tracker.process import this_process
from tracker.records import RunRow, Status
from tracker.run.metric_values import RESERVED, refused_name
from tracker.store import Store

FORMATS = ("history-json", "keras-json", "csv", "tensorboard")
#: The largest epoch number every database holds (a 32-bit INTEGER on PostgreSQL).
_MAX_EPOCH = 2**31 - 1
#: What CSVLogger writes for a metric missing at an epoch.
_MISSING = ("", "NA")

Records = list[tuple[int, dict[str, float]]]


class ImportFormatError(TrackerError):
    """The file to import is malformed; the message names the line or the field."""


def detect(path: Path) -> str:
    """The format of ``path``, from its content: a folder is TensorBoard, ``[`` a list of epochs, ``{`` a dict of lists, else CSV."""
    if path.is_dir():
        return "tensorboard"
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "history-json"
    if head.startswith(b"{"):
        return "keras-json"
    return "csv"


def parse(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[Records, int]:
    """Read a history file: ``(records, replaced)``, records as ``(epoch, metrics)`` in increasing epoch order.

    ``replaced`` counts the epochs that a restart logged again (the later ones are kept).

    Raises:
        ValueError: ``path`` does not exist or ``fmt`` is unknown.
        ImportFormatError: The content is malformed; the message names the line or the field.
    """
    source = Path(path)
    if not source.exists():
        raise ValueError(f"Cannot import {str(source)!r}: no such file or folder.")
    if fmt is None:
        fmt = detect(source)
    if fmt not in FORMATS:
        raise ValueError(f"Invalid value for --format. Received: {fmt!r}. Expected one of {', '.join(FORMATS)}.")
    if fmt != "tensorboard" and source.is_dir():
        raise ValueError(f"Cannot import {str(source)!r} as {fmt}: it is a folder. Only --format tensorboard reads a folder.")
    rows = {"history-json": _history_json, "keras-json": _keras_json, "csv": _csv, "tensorboard": _tensorboard}[fmt](source)
    return _merge_restarts(rows, source)


def _merge_restarts(rows: Iterable[tuple[int, dict[str, float]]], source: Path) -> tuple[Records, int]:
    # The kept epochs always increase (a row drops every kept epoch from its own on), so they form a stack:
    # each row is pushed once and popped at most once, linear in the rows however the restarts fall.
    merged: Records = []
    replaced = 0
    for epoch, values in rows:
        while merged and merged[-1][0] >= epoch:
            merged.pop()
            replaced += 1
        merged.append((epoch, values))
    if not merged:
        raise ImportFormatError(f"{source}: holds no epoch; nothing to import.")
    return merged, replaced


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ImportFormatError(f"{where}: a metric name must be a non-empty string. Received: {name!r}.")
    # The names training refuses, refused the same way (`tracker.run.metric_values`).
    if name in RESERVED:
        raise ImportFormatError(f"{where}: a metric cannot be named {name!r}; tracker uses that name for its own column. Rename it in the file.")
    refused = refused_name(name)
    if refused is not None:
        raise ImportFormatError(f"{where}: {refused}")
    return name


def _check_names(names: list[str], where: str) -> list[str]:
    """The metric names of a header, each checked, refusing one that appears twice."""
    seen: set[str] = set()
    for name in names:
        _check_name(name, where)
        if name in seen:
            raise ImportFormatError(f"{where}: column {name!r} appears twice, so which values are its own is unclear. Remove or rename one.")
        seen.add(name)
    return names


def _number(value: object, where: str) -> float:
    # null stands for NaN where the writer used strict JSON; a bool is not a metric.
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImportFormatError(f"{where}: expected a number. Received: {value!r}.")
    return float(value)


def _epoch(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ImportFormatError(f"{where}: expected an epoch number (an integer >= 0). Received: {value!r}.")
    try:
        epoch = int(value) if not isinstance(value, float) or value.is_integer() else -1
    except (ValueError, OverflowError):  # OverflowError: int(inf)
        epoch = -1
    if not 0 <= epoch <= _MAX_EPOCH:
        raise ImportFormatError(f"{where}: expected an epoch number (an integer from 0 to {_MAX_EPOCH}). Received: {value!r}.")
    return epoch


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}).") from e
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}).") from e
    except _RepeatedKey as e:
        raise ImportFormatError(
            f"{path}: field {e.args[0]!r} appears twice in one object, so which value is its own is unclear. Remove or rename one."
        ) from e


class _RepeatedKey(ValueError):
    pass


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of a repeated key silently; a history with one is ambiguous.
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return found


def _history_json(path: Path) -> list[tuple[int, dict[str, float]]]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise ImportFormatError(f"{path}: expected a JSON list of per-epoch objects. Received: a {type(data).__name__}.")
    rows = []
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(item, dict):
            raise ImportFormatError(f"{where}: expected an object such as {{\"epoch\": 0, \"loss\": 0.5}}. Received: {item!r}.")
        if "epoch" not in item:
            raise ImportFormatError(f"{where}: has no \"epoch\" field.")
        epoch = _epoch(item["epoch"], f"{where}, field \"epoch\"")
        rows.append((epoch, {_check_name(k, where): _number(v, f"{where}, field {k!r}") for k, v in item.items() if k != "epoch"}))
    return rows


def _keras_json(path: Path) -> list[tuple[int, dict[str, float]]]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ImportFormatError(f"{path}: expected a JSON object of lists, as History.history. Received: a {type(data).__name__}.")
    lengths = {}
    for name, values in data.items():
        _check_name(name, f"{path}: field {name!r}")
        if not isinstance(values, list):
            raise ImportFormatError(f"{path}: field {name!r}: expected a list of per-epoch values. Received: {values!r}.")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        longest = max(lengths, key=lengths.get)
        short = min(lengths, key=lengths.get)
        raise ImportFormatError(
            f"{path}: field {short!r} has {lengths[short]} values but {longest!r} has {lengths[longest]}: History.history "
            "does not say which epochs a shorter list belongs to (validation_freq > 1?). Import the CSVLogger or TensorBoard log instead."
        )
    count = next(iter(lengths.values()), 0)
    return [(e, {n: _number(data[n][e], f"{path}: field {n!r}, index {e}") for n in data}) for e in range(count)]


def _csv(path: Path) -> list[tuple[int, dict[str, float]]]:
    rows = []
    header: list[str] | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for cells in reader:
                line = f"{path}: line {reader.line_num}"
                if not cells or all(c == "" for c in cells):
                    continue
                if cells[0] == "epoch":
                    # The first header, or one written again when a restart appended to the log.
                    header = [cells[0], *_check_names(cells[1:], f"{line}, header")]
                    continue
                if header is None:
                    raise ImportFormatError(f"{line}: expected a header starting with 'epoch', as CSVLogger writes. Received: {cells!r}.")
                if len(cells) != len(header):
                    # A short last row in a file that ends without a newline: a log cut off while it was written.
                    cut = len(cells) < len(header) and f.read(1) == "" and not _ends_with_newline(path)
                    raise ImportFormatError(
                        f"{line}: has {len(cells)} fields, the header has {len(header)}."
                        + (" The file ends inside this row, without a newline: was it cut off while being written? "
                           "Remove the row to import the rest." if cut else "")
                    )
                epoch = _epoch(cells[0], f"{line}, column 'epoch'")
                rows.append((epoch, {n: _cell(c, f"{line}, column {n!r}") for n, c in zip(header[1:], cells[1:])}))
    except csv.Error as e:
        raise ImportFormatError(f"{path}: not a valid CSV file ({e}).") from e
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}).") from e
    return rows


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


def _cell(text: str, where: str) -> float:
    if text in _MISSING:
        return math.nan
    try:
        return float(text)  # also reads nan, inf and -inf, as Python writes them
    except ValueError:
        raise ImportFormatError(f"{where}: expected a number. Received: {text!r}.") from None


def _tensorboard(folder: Path) -> list[tuple[int, dict[str, float]]]:
    try:
        from tensorboard.backend.event_processing import (
            plugin_event_accumulator,
            tag_types,
        )
        from tensorboard.util import tensor_util
    except ImportError as e:
        raise ValueError("Importing TensorBoard logs needs the tensorboard package: pip install 'tracker[tensorboard]'.") from e
    # Keras's TensorBoard callback writes train/ and validation/; other writers put the events in the folder itself.
    runs = {"": folder, **{d.name: d for d in sorted(folder.iterdir()) if d.is_dir()}}
    scalars: dict[str, dict[int, float]] = {}
    for sub, where in runs.items():
        if not any(p.name.startswith("events.out.tfevents") for p in where.iterdir() if p.is_file()):
            continue
        accumulator = plugin_event_accumulator.EventAccumulator(str(where), size_guidance={tag_types.TENSORS: 0})
        try:
            accumulator.Reload()
        except Exception as e:  # the reader raises its own and protobuf's errors for a damaged file
            raise ImportFormatError(f"{where}: cannot read the TensorBoard event files ({type(e).__name__}: {e}).") from e
        tags = [t for t in accumulator.Tags()[tag_types.TENSORS] if accumulator.SummaryMetadata(t).plugin_data.plugin_name == "scalars"]
        # Keras logs per-epoch scalars as epoch_<name>, with the epoch as step; batch_ and other tags count steps instead.
        if any(t.startswith("epoch_") for t in tags):
            tags = [t for t in tags if t.startswith("epoch_")]
        for tag in tags:
            name = tag.removeprefix("epoch_")
            name = {"": name, "train": name, "validation": f"val_{name}"}.get(sub, f"{sub}/{name}")
            _check_name(name, f"{where}: tag {tag!r}")
            scalars[name] = {e.step: _scalar(tensor_util.make_ndarray(e.tensor_proto), where, tag, e.step) for e in accumulator.Tensors(tag)}
    if not scalars:
        raise ImportFormatError(f"{folder}: no TensorBoard scalars found (looked for events.out.tfevents.* here and in its subfolders).")
    steps = sorted({step for values in scalars.values() for step in values})
    if steps[0] < 0:
        raise ImportFormatError(f"{folder}: step {steps[0]} cannot be an epoch number (an integer >= 0).")
    return [(step, {n: v[step] for n, v in scalars.items() if step in v}) for step in steps]


def _scalar(array: object, where: Path, tag: str, step: int) -> float:
    if getattr(array, "size", None) != 1:
        raise ImportFormatError(
            f"{where}: tag {tag!r}, step {step}: expected a scalar. Received: a tensor of shape {tuple(getattr(array, 'shape', ()))}."
        )
    return float(array.item())  # type: ignore[attr-defined]


def import_history(
    store: Store, name: str, records: Records, *, config: Mapping[str, object] | None = None
) -> RunRow:
    """Create run ``name`` whose curve is ``records``, marked as imported. Refused (`ValueError`) if the name exists.

    The run and its attempt are created first, then the whole curve is committed in one transaction, then
    the attempt and the run are marked ``imported``. The run has no checkpoint, so it cannot be resumed.
    Its monitor is ``val_loss`` if recorded, else ``loss``, so `show` and `list` give its best epoch.
    """

    settings.validate_run_name(name)
    names = {n for _, values in records for n in values}
    monitor = "val_loss" if "val_loss" in names else "loss" if "loss" in names else None
    run, attempt_id = store.begin_import(name, process=this_process(), config=dict(config or {}), monitor=monitor, mode="min")
    run = store.commit_history(run, attempt_id, records)
    store.finish_attempt(run.id, attempt_id, Status.IMPORTED)
    return store.get_run(name)
