"""One checkpoint file's bytes: a plain .npz that numpy alone reads, hashed as written, written without copies."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tracker.checkpoint import LocalFolder, load
from tracker.checkpoint.file import CHUNK, HEADER_KEY, decode, encode, write_npy

ARRAYS = {
    "float32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "larger than a chunk": np.random.default_rng(0).random(CHUNK // 8 * 3 + 5),  # float64: spans 4 chunks
    "scalar": np.array(7, dtype=np.int64),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "bool": np.array([True, False, True]),
    "float16": np.linspace(0, 1, 9, dtype=np.float16).reshape(3, 3),
    "big-endian": np.arange(5, dtype=">i4"),
    "fortran order": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "strided": np.arange(20, dtype=np.int32)[::3],
    "uint8 header-like": np.frombuffer(b'{"epoch": 3}', dtype=np.uint8),
}


def _npy_bytes_of_np_save(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("name", list(ARRAYS), ids=list(ARRAYS))
def test_each_array_is_written_as_the_same_bytes_as_np_save(name):
    out = io.BytesIO()
    write_npy(out, ARRAYS[name])
    assert out.getvalue() == _npy_bytes_of_np_save(ARRAYS[name])


def test_the_archive_is_a_plain_uncompressed_npz_that_numpy_alone_reads():
    buf = io.BytesIO()
    sink = encode(buf, 3, ARRAYS, {"epoch": 3, "note": "é"})
    data = buf.getvalue()
    assert sink.size == len(data)
    assert sink.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None  # every member's CRC checks
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        for name, array in ARRAYS.items():
            assert archive.read(f"{name}.npy") == _npy_bytes_of_np_save(array)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted([*ARRAYS, HEADER_KEY])
        for name, array in ARRAYS.items():
            np.testing.assert_array_equal(npz[name], array)
            assert npz[name].dtype == array.dtype
    arrays, header = decode(data, "mem")
    assert header == {"epoch": 3, "note": "é"}
    assert arrays.keys() == ARRAYS.keys()


def test_a_local_checkpoint_records_the_size_and_sha256_of_the_bytes_on_disk(tmp_path: Path):
    folder = LocalFolder(tmp_path / "run")
    folder.probe_writable()
    info = folder.write(5, ARRAYS, {"epoch": 5})
    on_disk = Path(info.path).read_bytes()
    assert info.size == len(on_disk)
    assert info.sha256 == hashlib.sha256(on_disk).hexdigest()
    assert [p.name for p in (tmp_path / "run").iterdir()] == [Path(info.path).name]  # no temporary file left
    arrays, header = load(info)
    assert header == {"epoch": 5}
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(arrays[name], array)


def test_a_checkpoint_written_by_the_previous_encoder_still_loads(tmp_path: Path):
    # The layout the earlier tracker wrote: zipfile streaming np.lib.format.write_array's output.
    class Unseekable:
        def __init__(self, raw):
            self.raw = raw

        def write(self, data):
            return self.raw.write(data)

        def flush(self):
            pass

    buf = io.BytesIO()
    payload = {**ARRAYS, HEADER_KEY: np.frombuffer(b'{"epoch": 1}', dtype=np.uint8)}
    with zipfile.ZipFile(Unseekable(buf), "w", allowZip64=True) as archive:
        for key, value in payload.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    arrays, header = decode(buf.getvalue(), "old")
    assert header == {"epoch": 1}
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(arrays[name], array)
