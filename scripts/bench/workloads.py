"""What the rows train and compare against: the demo CNN, a 5M-parameter MLP and its data, and MLflow where installed."""

from __future__ import annotations

import importlib.util


def load_demo():
    """``scripts/demo_train.py``, imported on first use (it imports Keras): its ``build_model`` and ``blobs``."""
    from scripts import demo_train

    return demo_train


def build_big_model(width: int = 1024):
    """~5.3M parameters: a 3072-input MLP with three 1024-wide hidden layers, Adam (~5.8M at ``width=1100``)."""
    import keras

    model = keras.Sequential([
        keras.Input((3072,)),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model



def big_data(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3072)).astype("float32"), rng.integers(0, 10, n)



def mlflow_or_none():
    """MLflow, if the bench extra is installed; its rows read n/a otherwise."""
    if importlib.util.find_spec("mlflow") is None:
        return None
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store creation logs every migration
    return mlflow
