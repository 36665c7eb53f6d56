"""Learning-curve plots of tracked runs, drawn headless with matplotlib. Never imports TensorFlow or Keras.

``python -m tracker.plot`` (`tracker.plot.__main__`) and ``tracker plot`` draw them from the command line.

Example:
    >>> from tracker.plot import plot                          # doctest: +SKIP
    >>> plot(["cnn-a", "cnn-b"], "curves.png")                  # doctest: +SKIP
"""

from tracker.plot.figure import FORMATS, build_figure, plot

__all__ = ["FORMATS", "build_figure", "plot"]
