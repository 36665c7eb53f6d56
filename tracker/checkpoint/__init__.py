"""The file layer: checkpoint folders (local or on object storage), the file format, and the resume search.

It knows nothing of Keras and never imports the database layer (`tracker.store`): it takes the
rows it needs as `tracker.records` values.

Example:
    >>> folder = open_folder("ckpt", "cnn")                                 # doctest: +SKIP
    >>> info = folder.write(3, {"w": np.zeros(2)}, {"epoch": 3})            # doctest: +SKIP
    >>> arrays, header = load(info)                                         # doctest: +SKIP
"""

from tracker.checkpoint.folder import MARKER, Folder, LocalFolder, load, open_folder, read_verified, run_folder
from tracker.checkpoint.search import Verified, newest_verified

__all__ = ["MARKER", "Folder", "LocalFolder", "Verified", "load", "newest_verified", "open_folder", "read_verified", "run_folder"]
