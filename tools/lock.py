"""Write constraints.txt: one exact version for every package the registry and its extras install.

The README's set-up commands install with ``-c constraints.txt``. With every package pinned,
pip has one candidate for each and nothing to backtrack over, whatever its version: the pip
that ``python3 -m venv`` brings (23.2 on Python 3.11) otherwise walked back through hundreds
of transformers / optimum / tokenizers releases for 19 minutes and more on a cold cache.

Run after changing a dependency in pyproject.toml (tests/test_packaging.py fails until the
lock covers it):

    python3 tools/lock.py            # resolves with a current pip in a throwaway venv

The resolution runs ``pip install --dry-run --ignore-installed --report`` of the project with
every extra and ``torch==2.13.0`` (the CPU build the README installs first), so one set of
versions serves every combination of extras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
TORCH = "torch==2.13.0"
HEADER = """\
# Exact versions for `pip install -c constraints.txt ...` (see README, Set up): with one
# candidate per package, pip cannot backtrack. Written by tools/lock.py from pyproject.toml
# (every extra, with {torch}); do not edit by hand, run `python3 tools/lock.py` instead.
"""


def _run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def resolve() -> dict[str, str]:
    """name -> version of everything a fresh install of every extra would bring."""
    extras = ",".join(sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())
                             ["project"]["optional-dependencies"]))
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "env"
        venv.EnvBuilder(with_pip=True).create(env)
        pip = env / "bin" / "pip"
        _run(pip, "install", "-q", "-U", "pip")
        report = Path(tmp) / "report.json"
        _run(pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", report,
             TORCH, "-e", f"{ROOT}[{extras}]")
        installed = json.loads(report.read_text())["install"]
    pins = {}
    for item in installed:
        meta = item["metadata"]
        if meta["name"] == "registry":
            continue
        # a local build such as torch 2.13.0+cpu: pin the public version it builds
        pins[meta["name"]] = meta["version"].split("+", 1)[0]
    return pins


def main() -> None:
    pins = resolve()
    lines = [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda p:
                                                                p[0].lower())]
    LOCK.write_text(HEADER.format(torch=TORCH) + "\n".join(lines) + "\n")
    print(f"{LOCK.relative_to(ROOT)}: {len(lines)} packages")


if __name__ == "__main__":
    main()
