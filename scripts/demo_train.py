"""The demo's training script: a small CNN learns where a bright blob sits in noisy 28x28 images.

The data is generated, so nothing is downloaded. Run it directly, or through
``python scripts/demo.py``, which kills it mid-run and resumes it:

    python scripts/demo_train.py --epochs 12
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tracker  # noqa: E402


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images with a blob in one of four quadrants; the label is the quadrant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.normal(0.0, 0.6, (n, 28, 28, 1)).astype("float32")
    rows, cols = np.mgrid[0:28, 0:28]
    for i, label in enumerate(labels):
        cy, cx = 7 + 14 * (label // 2) + rng.integers(-3, 4), 7 + 14 * (label % 2) + rng.integers(-3, 4)
        images[i, :, :, 0] += np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 8.0)
    return images, labels


def build_model() -> keras.Model:
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(4),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(3e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="demo-cnn")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    keras.utils.set_random_seed(0)
    x, y = blobs(3000, seed=1)
    with tracker.track(args.run, config={"lr": 3e-4, "batch_size": 64, "epochs": args.epochs}):
        build_model().fit(x, y, epochs=args.epochs, batch_size=64, validation_split=0.2, verbose=2)


if __name__ == "__main__":
    main()
