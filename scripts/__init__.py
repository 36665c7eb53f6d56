"""The project's scripts (demo, crash tortures, benchmarks), a package so that each runs from the repository root as
``python -m scripts.NAME`` and imports ``tests.support`` without editing ``sys.path``."""
