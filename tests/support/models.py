"""The tiny models the tests train, shared by the in-process tests and the child training script."""

from __future__ import annotations

import keras


def tiny(kind: str = "sequential", *, dropout: float = 0.0) -> keras.Model:
    """An uncompiled 8x8x1 -> 3 CNN: ``sequential``, ``functional``, or ``subclassed`` (left unbuilt on purpose)."""
    if kind == "functional":
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
        return keras.Model(inputs, keras.layers.Dense(3)(h))
    if kind == "subclassed":
        return TinySubclassed()
    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten()]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    return keras.Sequential([*layers, keras.layers.Dense(3)])


class TinySubclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.flat = keras.layers.Flatten()
        self.out = keras.layers.Dense(3)

    def call(self, inputs):
        return self.out(self.flat(self.conv(inputs)))
