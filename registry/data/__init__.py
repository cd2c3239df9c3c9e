"""Data shipped with the package: a sample of the real Debian catalog for `registry demo`.

``debian-sample.jsonl.gz``: 3,500 binary packages of Debian 12 (bookworm, main, amd64), one JSON
object per line with ``key`` (package name), ``section``, ``title`` (the short description) and
``batch`` (``catalog`` for the first 3,000, ``newer`` for 500 more). Made by
``tools/make_debian_sample.py``.
"""

from importlib.resources import files

DEBIAN_SAMPLE = files(__name__) / "debian-sample.jsonl.gz"
