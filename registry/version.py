"""The registry's version: one place, read by pyproject.toml, the package and the command line."""

__version__ = "0.1.0"
