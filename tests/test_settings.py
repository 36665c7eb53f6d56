"""Which process writes under TF_CONFIG, and where checkpoints go."""

from __future__ import annotations

import json

import pytest

from tracker import settings

CLUSTER = {"worker": ["h0:1", "h1:1"]}


@pytest.mark.parametrize(
    ("config", "chief"),
    [
        (None, True),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {**CLUSTER, "chief": ["c:1"]}, "task": {"type": "chief", "index": 0}}, True),
        ({"cluster": {**CLUSTER, "chief": ["c:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {**CLUSTER, "evaluator": ["e:1"]}, "task": {"type": "evaluator", "index": 0}}, False),
        ({"cluster": CLUSTER}, True),  # no task: a single process that merely sees the variable
    ],
)
def test_only_the_chief_writes(monkeypatch, config, chief):
    if config is not None:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert settings.is_chief() is chief


def test_a_malformed_tf_config_is_named(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid cluster description"):
        settings.is_chief()


@pytest.mark.parametrize(("given", "expected"), [("s3://bucket/prefix/", "s3://bucket/prefix"), ("gs://bucket", "gs://bucket")])
def test_a_storage_url_is_kept_as_given(given, expected):
    assert settings.resolve_checkpoint_root(given) == expected


def test_a_local_path_becomes_absolute(tmp_path):  # the suite runs each test in its tmp_path
    assert settings.resolve_checkpoint_root("ckpt") == str(tmp_path / "ckpt")
    assert settings.resolve_checkpoint_root(f"file://{tmp_path}/other") == str(tmp_path / "other")
