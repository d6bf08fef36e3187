"""The project's commands, usable on a machine that has only Python.

    python tasks.py quickstart   # set up .venv, run examples/quickstart.py
    python tasks.py test         # set up .venv, run the test suite
    python tasks.py docs         # set up .venv, build the HTML docs (warnings are errors)
    python tasks.py floors       # set up .venv-floors at the declared minimum versions, run the suite

Each creates its venv (``.venv``, or ``.venv-floors`` for ``floors``) next to
this file when it is missing, installs a torch build when none is installed
(``SKMLP_TORCH``, default ``torch==2.13.0``; see the README for picking a CPU
or CUDA build), then installs skmlp in editable mode with the extras the task
needs, and runs the task inside that venv.

``floors`` pins numpy, scipy, scikit-learn, tqdm, pandas and polars to exactly
the ``>=`` versions that pyproject.toml declares (``dependencies`` and the
``test`` extra), so the floors stated there are the ones tested. torch is the
one left to ``SKMLP_TORCH``: its floor is the oldest build that has run the
suite (see the README).
"""

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SKMLP_VENV", ROOT / ".venv"))
FLOORS_VENV = Path(os.environ.get("SKMLP_FLOORS_VENV", ROOT / ".venv-floors"))
PYTEST = ["{py}", "-m", "pytest"]
TASKS = {
    "quickstart": ("examples", ["{py}", "examples/quickstart.py"]),
    "test": ("test", PYTEST),
    # Runs the gallery too; the pages land in docs/_build/html (index.html).
    "docs": ("docs", ["{py}", "-m", "sphinx", "-W", "-b", "html", "docs", "docs/_build/html"]),
    "floors": ("test", PYTEST),
}
# The packages whose declared floor the ``floors`` task installs exactly.
FLOOR_PACKAGES = ("numpy", "scipy", "scikit-learn", "tqdm", "pandas", "polars")


def _python(env):
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return str(env / sub)


def _run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def floor_pins():
    """``name==version`` for each of FLOOR_PACKAGES, from pyproject.toml's ``>=`` floors."""
    import tomllib  # Python 3.11+, as skmlp itself needs

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*", req)
        if m:
            floors[m.group(1).lower()] = m.group(2)
    missing = [name for name in FLOOR_PACKAGES if name not in floors]
    if missing:
        sys.exit(f"pyproject.toml declares no '>=' floor for {', '.join(missing)}")
    return [f"{name}=={floors[name]}" for name in FLOOR_PACKAGES]


def setup(extra, env=VENV, constraints=None):
    if not Path(_python(env)).exists():
        venv.create(env, with_pip=True)
    py = _python(env)
    has_torch = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        torch_spec = os.environ.get("SKMLP_TORCH", "torch==2.13.0").split()
        _run([py, "-m", "pip", "install", "-q", *torch_spec])
    cmd = [py, "-m", "pip", "install", "-q"]
    if constraints:
        path = env / "floors-constraints.txt"
        path.write_text("\n".join(constraints) + "\n")
        print("floors:", ", ".join(constraints), flush=True)
        cmd += ["-c", str(path)]
    _run(cmd + ["-e", f".[{extra}]"])
    return py


def main(argv):
    if len(argv) < 1 or argv[0] not in TASKS:
        sys.exit(f"usage: python tasks.py {{{'|'.join(TASKS)}}} [extra args]")
    extra, cmd = TASKS[argv[0]]
    if argv[0] == "floors":
        py = setup(extra, FLOORS_VENV, floor_pins())
        # Record what was tested: the pinned floors, and the torch build used.
        report = ("import importlib.metadata as m, platform; print('tested with Python',"
                  " platform.python_version() + ',', ', '.join(n + ' ' + m.version(n) for n in"
                  f" {('torch',) + FLOOR_PACKAGES!r}), flush=True)")
        subprocess.run([py, "-c", report], cwd=ROOT, check=True)
    else:
        py = setup(extra)
    result = subprocess.run([c.format(py=py) for c in cmd] + argv[1:], cwd=ROOT)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
