"""Sphinx configuration for the skmlp documentation.

Build with ``python tasks.py docs`` or, in an environment that has the
``docs`` extra, ``sphinx-build -W -b html docs docs/_build/html``.
"""

import os
import re
import sys
import warnings
from pathlib import Path

# Document (and run the gallery against) the checkout being built, not
# whatever skmlp happens to be installed.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import skmlp  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

# The gallery runs in this process. Small networks gain nothing from several
# threads, and on a busy machine torch's spinning worker threads can make a fit
# ten times slower, so the build uses one thread for torch and for BLAS
# (SKMLP_DOCS_THREADS overrides). The examples print the count they ran with.
DOCS_THREADS = int(os.environ.get("SKMLP_DOCS_THREADS", "1"))
torch.set_num_threads(DOCS_THREADS)
_blas_limits = threadpool_limits(DOCS_THREADS)

project = "skmlp"
author = "the skmlp developers"
copyright = "the skmlp developers"
version = release = skmlp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False  # autosummary's class template lists them
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- intersphinx (opt-in: it needs the network) -----------------------------
# A fresh clone must build offline with -W, so cross-project links are only
# resolved when SKMLP_DOCS_INTERSPHINX=1 is set (e.g. for a published build).
if os.environ.get("SKMLP_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }



_SKLEARN_ROLE = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<([^>]*)>)?`")


def _plain_sklearn_refs(app, what, name, obj, options, lines):
    """Offline, turn :ref:/:term: roles in inherited scikit-learn docstrings
    (``score``, ``set_fit_request``, ...) into plain text: their targets live
    in scikit-learn's docs, and would otherwise be warnings under -W."""
    if not (getattr(obj, "__module__", None) or "").startswith("sklearn"):
        return
    lines[:] = [_SKLEARN_ROLE.sub(lambda m: m.group(1) or m.group(2), line)
                for line in lines]


def setup(app):
    if "sphinx.ext.intersphinx" not in extensions:
        app.connect("autodoc-process-docstring", _plain_sklearn_refs)


# -- sphinx-gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples" / "gallery")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "doc_module": ("skmlp",),
    "reference_url": {"skmlp": None},
    "backreferences_dir": "generated",  # next to the autosummary pages
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "write_computation_times": True,
    "show_memory": False,
}

# Examples run in this process; keep matplotlib headless and quiet.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg",
                        category=UserWarning)

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skmlp {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {
    "index": [],
    "getting_started": [],
    "api": [],
    "benchmarks": [],
}
html_show_sourcelink = False
