"""Operations on whole runs that touch both the database and the checkpoint files, each crash-safe.

`tracker.admin.runs` deletes and renames runs, `tracker.admin.maintenance` verifies and
garbage-collects checkpoints (``tracker verify``, ``tracker gc``), and `tracker.admin.importer`
brings other tools' logs in as runs (``tracker import``).
"""
