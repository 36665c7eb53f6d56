"""A run stays on the Keras backend that trained it: a resume under another one is refused unless forced."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tracker
from tests.test_crash import CHILD, _env
from tracker.errors import ResumeError
from tracker.store import open_store


def attempt_versions(db: str, name: str) -> list[dict[str, str]]:
    """The ``versions`` recorded with each of run ``name``'s attempts, oldest first."""
    store = open_store(db)
    try:
        return [a.process.versions for a in store.attempts(store.find_run(name).id)]
    finally:
        store.close()


@pytest.mark.parametrize(
    "saved, force",
    [("current", False), (None, False), ("other", True)],
    ids=["same-backend", "written-before-backends-were-recorded", "forced"],
)
def test_check_backend_accepts(keras_env, saved: str | None, force: bool) -> None:
    from tracker.keras import state as keras_state

    header = {} if saved is None else {"backend": keras_env.backend.backend() if saved == "current" else saved}
    keras_state.check_backend(header, "r", force=force)


def test_check_backend_refuses_another_backend_naming_both(keras_env) -> None:
    from tracker.keras import state as keras_state

    current = keras_env.backend.backend()
    with pytest.raises(ResumeError, match=rf"Received: KERAS_BACKEND='{current}'\. Expected: KERAS_BACKEND='other'"):
        keras_state.check_backend({"backend": "other"}, "r", force=False)


def test_the_checkpoint_records_its_backend(keras_env, make_model, data, sqlite_db: str, ckpt: str) -> None:
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=1, verbose=0)
    [path] = Path(ckpt, "r").glob("*.npz")
    with np.load(path) as saved:  # plain numpy reads it
        header = json.loads(saved["__tracker__"].tobytes())
    assert header["backend"] == keras_env.backend.backend()
    [versions] = attempt_versions(sqlite_db, "r")
    assert versions["keras_backend"] == keras_env.backend.backend() == "tensorflow"
    assert versions["keras"] == keras_env.__version__


def test_a_torch_dataloader_with_its_own_generator_is_named_before_training(keras_env, data) -> None:
    torch = pytest.importorskip("torch")  # installed with '.[torch]'; the tensorflow-only install has no DataLoader to pass
    from tracker.keras.inputs import _warn_if_inexact

    run = SimpleNamespace(name="r", schedule=SimpleNamespace(inside_epochs=False))  # the warning names the run
    x, y = data
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    with pytest.warns(UserWarning, match="Run 'r'.*torch DataLoader given its own generator"):
        _warn_if_inexact(run, {"x": torch.utils.data.DataLoader(dataset, shuffle=True, generator=torch.Generator())})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Without a generator it draws from torch's global generator, which tracker saves on torch.
        _warn_if_inexact(run, {"x": torch.utils.data.DataLoader(dataset, shuffle=True)})


def test_an_unbuilt_model_is_built_from_a_torch_dataloader_without_drawing_from_it(keras_env, data) -> None:
    """A resumed subclassed model is built before fit from its input's shape; a DataLoader has none of its own."""
    torch = pytest.importorskip("torch")
    from tests.support.models import tiny
    from tracker.keras.inputs import _build_from

    x, y = data
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16, shuffle=True)
    model = tiny("subclassed")
    drawn_from = torch.get_rng_state()
    _build_from(model, loader)
    assert model.built and [tuple(w.shape) for w in model.weights] == [(3, 3, 1, 4), (4,), (144, 3), (3,)]
    assert torch.equal(torch.get_rng_state(), drawn_from)  # no shuffle order was drawn to find the shape

    class Stream(torch.utils.data.IterableDataset):  # cannot be indexed: its first batch gives the shape
        def __iter__(self):
            return iter(zip(torch.from_numpy(x), torch.from_numpy(y)))

    streamed = tiny("subclassed")
    _build_from(streamed, torch.utils.data.DataLoader(Stream(), batch_size=16))
    assert [tuple(w.shape) for w in streamed.weights] == [(3, 3, 1, 4), (4,), (144, 3), (3,)]


@pytest.mark.slow
def test_resuming_under_another_backend_is_refused_before_training_unless_forced(tmp_path: Path) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    train = [sys.executable, str(CHILD), "r"]
    subprocess.run([*train, "2", "--backend", "jax"], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    [jax_attempt] = attempt_versions(db, "r")
    assert jax_attempt["keras_backend"] == "jax"
    assert {"keras", "jax", "jaxlib"} <= set(jax_attempt)

    refused = subprocess.run([*train, "4", "--backend", "torch"], env=_env(db, ckpt), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "Received: KERAS_BACKEND='torch'. Expected: KERAS_BACKEND='jax'" in refused.stderr
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
    shown = subprocess.run([sys.executable, "-m", "tracker", "show", "r", "--json", "--db", db], capture_output=True, text=True, check=True)
    assert "KERAS_BACKEND='jax'" in json.loads(shown.stdout)["attempts"][-1]["error"]

    subprocess.run([*train, "4", "--backend", "torch"], env={**_env(db, ckpt), "TRACKER_FORCE": "1"}, cwd=tmp_path, check=True, timeout=300)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2, 3]
    # Each attempt says which backend it ran, the refused one too: the record a switch is judged by.
    assert [v["keras_backend"] for v in attempt_versions(db, "r")] == ["jax", "torch", "torch"]
    assert "torch" in attempt_versions(db, "r")[-1]


@pytest.mark.slow
def test_a_real_fit_on_a_torch_dataloader_with_its_own_generator_warns_before_the_first_epoch(tmp_path: Path) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    command = [sys.executable, str(CHILD), "r", "1", "--case", "dataloader-generator", "--backend", "torch"]
    done = subprocess.run(command, env={**_env(db, ckpt), "CHILD_ANNOUNCE_EPOCHS": "1"}, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    warned = done.stderr.find("torch DataLoader given its own generator")
    assert 0 <= warned < done.stderr.index("EPOCH-BEGIN 0"), done.stderr
