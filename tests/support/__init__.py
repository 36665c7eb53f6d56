"""Helpers shared by the tests and the scripts: crash invariants, real servers, the web view's process, tiny models.

Imported as ``tests.support.<module>`` with the repository root on ``sys.path``: pytest puts it there,
and the scripts that use them run as modules from the root (``python -m scripts.crash_torture``).
"""
