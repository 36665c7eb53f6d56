"""Checkpoints on shared storage through fsspec: ``s3://bucket/prefix``, ``gs://...``, ``abfs://...``.

Object stores have no atomic rename, so a checkpoint is uploaded once under a
key that is never reused (`tracker.checkpoint.file.new_name`), then read back and
checked (size and sha256 of the stored object against the bytes sent) before
the database may point at it. An upload that dies halfway leaves at most an
orphan that no row references, which `RemoteFolder.sweep` deletes later.

Endpoints and credentials come from the usual places: the provider's own
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...), fsspec's
``FSSPEC_<PROTOCOL>_<OPTION>`` variables, or ``storage_options=`` of
`tracker.track`. tracker never records or prints them.

Example:
    >>> folder = RemoteFolder("s3://team-ckpt/runs/cnn", {})                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from tracker.checkpoint import file as checkpoint
from tracker.errors import CheckpointError
from tracker.faults import label_of, pause_point
from tracker.records import FileInfo
from tracker.redact import reason, redact

_CHUNK = 4 << 20


class RemoteFolder:
    """A run's checkpoints under a URL prefix of an fsspec filesystem."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self.location = url
        try:
            self._fs, self._root = fsspec.core.url_to_fs(self.location, **storage_options)
        except (ImportError, ValueError) as e:
            raise CheckpointError(
                f"Cannot use checkpoint location {redact(self.location)}: {e}. "
                "For s3:// install s3fs (pip install 'tracker[s3]'); for other schemes, the fsspec package that serves it."
            ) from e

    def __str__(self) -> str:
        return redact(self.location)

    def _url(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _key(self, name: str) -> str:
        return f"{self._root}/{name}"

    def probe_writable(self) -> bool:
        probe = self._key(f".probe-{uuid.uuid4().hex}")
        try:
            self._fs.pipe_file(probe, b"ok")
            self._fs.rm_file(probe)
        except Exception as e:  # noqa: BLE001 - clients (s3fs, gcsfs, ...) raise their own error types, not only OSError
            raise CheckpointError(
                f"Checkpoint location {self} is not writable: {reason(e)}. Check the bucket name, the credentials "
                "(e.g. AWS_ACCESS_KEY_ID, or storage_options=) and the endpoint (e.g. AWS_ENDPOINT_URL)."
            ) from e
        return False  # an object-store prefix is not made: nothing to take away

    def claim(self, uid: str, owner: str, referenced: set[str]) -> bool:
        marker = self._key(checkpoint.MARKER)
        try:
            recorded = self._fs.cat_file(marker).decode().splitlines()
        except FileNotFoundError:
            recorded = None
        if recorded is None or (not recorded and checkpoint.reclaimable(self._url(checkpoint.MARKER), self._names(), referenced)):
            self._fs.pipe_file(marker, f"{uid}\n{owner}\n".encode())  # an object appears whole or not at all
            return recorded is None
        checkpoint.refuse_foreign(str(self), recorded, uid)
        return False

    def owned_by(self, uid: str) -> bool:
        try:
            recorded = self._fs.cat_file(self._key(checkpoint.MARKER)).decode().splitlines()
        except FileNotFoundError:
            return False
        return bool(recorded) and recorded[0] == uid

    def locate(self, info: FileInfo) -> FileInfo:
        name = info.path.rsplit("/", 1)[-1]
        if info.path != self._url(name) and self._fs.exists(self._key(name)):
            return dataclasses.replace(info, path=self._url(name))
        return info

    def _names(self) -> list[str]:
        try:
            names = [p.rsplit("/", 1)[-1] for p in self._fs.ls(self._root, detail=False, refresh=True)]
        except FileNotFoundError:
            return []
        return [n for n in names if checkpoint.FILE_NAME.fullmatch(n)]

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        name = checkpoint.new_name(epoch)
        try:
            with self._fs.open(self._key(name), "wb") as raw:
                sent = checkpoint.encode(raw, epoch, arrays, header)
            pause_point("before-rename", label_of(epoch, header))  # here: uploaded, not yet verified
            info = FileInfo(self._url(name), sent.size, sent.sha256.hexdigest())
            stored_size, stored_sha = _hash_object(self._fs, self._key(name))
        except Exception as e:  # noqa: BLE001 - clients (s3fs, gcsfs, ...) raise their own error types, not only OSError
            raise CheckpointError(f"Cannot write checkpoint {self._url(name)}: {reason(e)}.") from e
        checkpoint.check(info, stored_size, stored_sha)
        return info

    def upload(self, local: Path, info: FileInfo) -> None:
        """Upload the local file ``local`` as ``info`` (its recorded URL, size and sha256), read it back and check it:
        how a checkpoint staged on the training host (team mode, `tracker.spool.staging`) reaches this folder."""
        key = self._key(info.path.rsplit("/", 1)[-1])
        try:
            self._fs.put_file(str(local), key)
            stored_size, stored_sha = _hash_object(self._fs, key)
        except Exception as e:  # noqa: BLE001 - clients (s3fs, gcsfs, ...) raise their own error types, not only OSError
            raise CheckpointError(f"Cannot upload checkpoint {redact(info.path)}: {reason(e)}.") from e
        checkpoint.check(info, stored_size, stored_sha)

    def exists(self, info: FileInfo) -> bool:
        """Whether the object of ``info`` is here. Raises `CheckpointError` if the store cannot be asked."""
        try:
            return bool(self._fs.exists(self._key(info.path.rsplit("/", 1)[-1])))
        except Exception as e:  # noqa: BLE001 - as above
            raise CheckpointError(f"Cannot reach checkpoint storage {self}: {reason(e)}.") from e

    def delete(self, paths: list[str]) -> None:
        for p in paths:
            try:
                self._fs.rm_file(self._key(p.rsplit("/", 1)[-1]))
            except FileNotFoundError:
                pass

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        kept = {p.rsplit("/", 1)[-1] for p in referenced}
        orphans = [self._url(n) for n in self._names() if n not in kept]
        if not dry_run:
            self.delete(orphans)
        return orphans

    def release(self) -> None:
        if not self._names():
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm_file(self._key(checkpoint.MARKER))


def read_bytes(url: str, storage_options: dict[str, Any]) -> bytes:
    """The whole object at ``url``; `CheckpointError` naming the URL if it cannot be read."""
    try:
        with fsspec.open(url, "rb", **storage_options) as f:
            return f.read()
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint file {redact(url)} is missing") from e
    except Exception as e:  # noqa: BLE001 - clients (s3fs, gcsfs, ...) raise their own error types, not only OSError
        raise CheckpointError(f"checkpoint file {redact(url)} cannot be read: {reason(e)}") from e


def _hash_object(fs: fsspec.AbstractFileSystem, key: str) -> tuple[int, str]:
    # Read back what the store holds, not what we sent: the check is of the stored bytes.
    digest, size = hashlib.sha256(), 0
    fs.invalidate_cache(key)
    with fs.open(key, "rb", cache_type="none") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()

