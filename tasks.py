"""The project's two commands, usable on a machine that has only Python.

    python tasks.py quickstart   # set up .venv, run examples/quickstart.py
    python tasks.py test         # set up .venv, run the test suite
    python tasks.py docs         # set up .venv, build the HTML docs (warnings are errors)

Each creates ``.venv`` next to this file when it is missing, installs a torch
build when none is installed (``SKMLP_TORCH``, default ``torch==2.13.0``; see
the README for picking a CPU or CUDA build), then installs skmlp in editable
mode with the extras the task needs, and runs the task inside that venv.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SKMLP_VENV", ROOT / ".venv"))
TASKS = {
    "quickstart": ("examples", ["{py}", "examples/quickstart.py"]),
    "test": ("test", ["{py}", "-m", "pytest"]),
    # Runs the gallery too; the pages land in docs/_build/html (index.html).
    "docs": ("docs", ["{py}", "-m", "sphinx", "-W", "-b", "html", "docs", "docs/_build/html"]),
}


def _python():
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return str(VENV / sub)


def _run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def setup(extra):
    if not Path(_python()).exists():
        venv.create(VENV, with_pip=True)
    py = _python()
    has_torch = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        torch_spec = os.environ.get("SKMLP_TORCH", "torch==2.13.0").split()
        _run([py, "-m", "pip", "install", "-q", *torch_spec])
    _run([py, "-m", "pip", "install", "-q", "-e", f".[{extra}]"])
    return py


def main(argv):
    if len(argv) < 1 or argv[0] not in TASKS:
        sys.exit(f"usage: python tasks.py {{{'|'.join(TASKS)}}} [extra args]")
    extra, cmd = TASKS[argv[0]]
    py = setup(extra)
    result = subprocess.run([c.format(py=py) for c in cmd] + argv[1:], cwd=ROOT)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
