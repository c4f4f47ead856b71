"""jobdock's version, in a leaf of its own: the API reports it without
loading the package's client (jobdock/__init__.py re-exports it)."""

__version__ = "0.1.0"
