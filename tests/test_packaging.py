"""The migrations ship inside the package: a wheel installed into a fresh virtualenv outside
the checkout can create a registry database."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

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
