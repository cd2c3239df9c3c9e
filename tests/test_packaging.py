"""The migrations ship inside the package: a wheel installed into a fresh virtualenv outside
the checkout can create a registry database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import registry
from registry.store.schema import HEAD

REPO = Path(__file__).resolve().parent.parent


def _run(*args, cwd=None):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_wheel_in_a_fresh_virtualenv_can_init_a_database(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", dist, REPO)
    wheel = next(dist.glob("registry-*.whl"))

    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .strip())
    # the dependencies come from this test environment's site-packages (read as plain paths:
    # their .pth files, such as an editable install of this checkout, are not processed)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(python, "-c", "import registry; print(registry.__file__)", cwd=work)
    assert Path(where.strip()).is_relative_to(env)
    out = _run(env / "bin" / "registry", "--db", "sqlite:///fresh.db", "init", cwd=work)
    assert f"created schema {HEAD}" in out
    listed = _run(env / "bin" / "registry", "--db", "sqlite:///fresh.db", "versions", "--json",
                  cwd=work)
    assert json.loads(listed) == []


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```sh\n")[1:]]
    setup_demo, setup_tests = blocks[0], blocks[1]
    assert "registry demo" in setup_demo and "pytest" in setup_tests
    ci_lines = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert ci_lines[-1] == setup_tests


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _reached() -> dict[str, list[Requirement]]:
    """Every requirement the project and its extras lead to, through what is installed here
    (a package that is not installed, such as the bench extra's, is checked by name only)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    todo = [(Requirement(r), "") for r in project["dependencies"]]
    todo += [(Requirement(r), extra) for extra, reqs in extras.items() for r in reqs]
    reached: dict[str, list[Requirement]] = {}
    walked = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name == "registry":  # an extra naming another: registry[postgresql]
            todo += [(Requirement(r), e) for e in req.extras for r in extras[e]]
            continue
        reached.setdefault(name, []).append(req)
        if (name, frozenset(req.extras)) in walked:
            continue
        walked.add((name, frozenset(req.extras)))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(r), e) for r in requires for e in ("", *req.extras)]
    return reached


def test_every_dependency_is_pinned_by_the_lock():
    """With one exact version per package, pip (even the 23.2 that `python3 -m venv` brings)
    has nothing to backtrack over. A dependency added or bounded in pyproject.toml without
    `python3 tools/lock.py` fails here, not as a 20-minute install on a user's machine."""
    pins = _lock()
    reached = _reached()
    assert {"numpy", "faiss-cpu", "psycopg", "sentence-transformers", "transformers",
            "optimum", "tokenizers", "pytest"} <= set(reached)  # the walk went deep
    unpinned = sorted(set(reached) - set(pins))
    assert not unpinned, f"not in constraints.txt (run python3 tools/lock.py): {unpinned}"
    for name, reqs in reached.items():
        for req in reqs:
            assert req.specifier.contains(pins[name], prereleases=True), \
                f"constraints.txt pins {name}=={pins[name]}, outside {req}"
        try:
            installed = Version(metadata.version(name)).public
        except metadata.PackageNotFoundError:
            continue
        assert installed == pins[name], f"{name} {installed} is installed, the lock says " \
                                        f"{pins[name]}: install with -c constraints.txt"


def test_the_readme_installs_with_the_lock():
    readme = (REPO / "README.md").read_text()
    commands = [b.split("```", 1)[0].strip() for b in readme.split("```sh\n")[1:3]]
    for command in commands:
        installs = [part for part in command.split("&&") if " install " in part]
        assert len(installs) == 2, command
        assert all("-c constraints.txt" in part for part in installs), command


def test_version_is_printed():
    done = subprocess.run([sys.executable, "-m", "registry.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"registry {registry.__version__}\n"
    assert metadata.version("registry") == registry.__version__  # one source: pyproject reads it


def test_postgresql_without_its_drivers_names_the_extra(tmp_path):
    """A SQLite-only install (no `postgresql` extra) asked for PostgreSQL: one line that says
    what to install, for reads (psycopg2) and writes (psycopg 3) alike."""
    for module in ("psycopg", "psycopg2"):  # installed here: shadow them as absent
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError('No module named {module}', name={module!r})\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for command in (["versions"], ["init"], ["versions", "--json"]):
        done = subprocess.run([sys.executable, "-m", "registry.cli", "--db",
                               "postgresql://postgres@127.0.0.1/test", *command],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        message = json.loads(done.stderr)["detail"] if "--json" in command else \
            done.stderr.removeprefix("Error: ").rstrip("\n")
        assert message.startswith("PostgreSQL needs the postgresql extra ("), done.stderr
        assert message.endswith("is not installed): pip install -c constraints.txt -e "
                                "'.[postgresql]' in the registry checkout")
