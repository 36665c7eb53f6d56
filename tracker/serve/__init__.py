"""A live, read-only web view of the runs: ``python -m tracker.serve`` (see `tracker.serve.__main__`).

`tracker.serve.app` builds the Starlette app, `tracker.serve.data` reads what the pages show,
`tracker.serve.feed` pushes changes to open pages, `tracker.serve.downsample` reduces long curves.
"""
