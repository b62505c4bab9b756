"""Sphinx configuration of the detkit documentation.

Build it strictly, as CI does (warnings are errors, every reference must resolve)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html
    python -m sphinx -W --keep-going -n -b doctest docs docs/_build/doctest

Decisions, written down:

* **No intersphinx.** The docs build offline (CI has no network), so references
  to other projects' objects (MXNet, numpy, the standard library's ``pathlib``
  and ``os``, pluggy, ...) cannot resolve. They are listed in
  ``nitpick_ignore_regex`` below, by module prefix, and only those: a reference
  to a ``detkit`` name that does not resolve is always an error. Builtins and
  ``typing`` names resolve without intersphinx.
* **Explicit API pages** (``docs/api/*.rst``): every public object is named by
  one ``auto*`` directive, documented once under its home name; the extension
  ``detkit_docs`` resolves references to the other public spellings of the same
  object (``detkit.Backbone`` and ``detkit.interfaces.Backbone``).
  ``tests/test_docs.py`` fails when a public name, hook or configuration key is
  missing.
* **Figures are computed when the docs build**, by matplotlib's ``plot``
  directive, from small computations (no training).
* **Examples are doctests**: ``python -m sphinx -b doctest`` runs every
  ``>>>`` example of the pages and of the docstrings they include.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # a source checkout that is not installed

os.environ.setdefault("MPLBACKEND", "Agg")
# The examples and figures compute on tiny inputs, where threads only cost: one OpenMP
# thread keeps the build fast on a busy machine (set OMP_NUM_THREADS to choose).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Documentation builds must not depend on what else is installed: only detkit's own components.
os.environ.setdefault("DETKIT_DISABLE_PLUGIN_AUTOLOAD", "1")

import detkit  # noqa: E402

# -- Project ------------------------------------------------------------------------------

project = "detkit"
author = "detkit developers"
copyright = "detkit developers; Apache License 2.0"
release = detkit.__version__
version = ".".join(release.split(".")[:2])

# -- General ------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
    "detkit_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# Strict: every cross-reference must resolve (CI also passes -W --keep-going -n).
nitpicky = True
default_role = "py:obj"
# "--set" stays "--set": no typographic dashes and quotes in a technical text.
smartquotes = False

# Names of other projects: they cannot resolve without intersphinx (no network in CI).
# Only external modules are listed; a detkit reference that does not resolve stays an error.
_EXTERNAL = r"(mxnet|mx|numpy|np|pathlib|os|pluggy|PIL|yaml|argparse|collections\.abc|pytest|_pytest|matplotlib|onnx|onnxruntime)"
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL + r"(\..+)?"),
    # The same names as MXNet, pathlib and os docstrings and annotations spell them short.
    (r"py:class", r"(NDArray|Symbol|Context|HybridBlock|ndarray|Path|PathLike|PluginManager|LRScheduler)"),
    # numpy-style type descriptions are prose that the Python domain splits into "references":
    # "shape (B, K, 6)", "tuple of 4 floats", "{"pad", "discard"}", "a list of those". A
    # fragment with spaces, brackets, quotes or backquotes, a number, or a one-letter shape
    # symbol (B, N, C, ...) is prose, not a name. Plain identifiers are still checked.
    (r"py:class", r".*[\s()\[\]{}'\"`].*|[0-9.+-].*|[A-Z]"),
]
# The vocabulary of numpy-style type descriptions ("sequence of str", "path, optional"):
# plain words, not objects.
nitpick_ignore = [
    ("py:class", word)
    for word in (
        "sequence", "mapping", "path", "callable", "iterable", "array", "array-like",
        "decorator", "module", "object", "shape", "those", "arrays",
    )
] + [("py:obj", "True"), ("py:obj", "False")]

# -- autodoc and napoleon ----------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = True
# Show the public alias instead of its expansion in signatures.
autodoc_type_aliases = {"ComponentSpec": "detkit.ComponentSpec", "Register": "detkit.hookspecs.Register"}
python_use_unqualified_type_names = True

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False
napoleon_use_param = True
napoleon_preprocess_types = True
napoleon_custom_sections = [
    ("When it is called", "params_style"),
    ("What it receives", "params_style"),
    ("What it must do", "params_style"),
]

# -- doctest -----------------------------------------------------------------------------

# Each page's examples run in a fresh temporary directory, so that the files they
# write ("data/pikachu", "runs/...") go nowhere else, on the CPU, with fixed seeds.
doctest_global_setup = """
import os, shutil, tempfile
os.environ.setdefault("MPLBACKEND", "Agg")
_doctest_previous_dir = os.getcwd()
_doctest_dir = tempfile.mkdtemp(prefix="detkit-doctest-")
os.chdir(_doctest_dir)
import mxnet as mx
import numpy as np
import detkit
mx.random.seed(0)
np.random.seed(0)
"""
doctest_global_cleanup = """
os.chdir(_doctest_previous_dir)
shutil.rmtree(_doctest_dir, ignore_errors=True)
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS
    | __import__("doctest").NORMALIZE_WHITESPACE
    | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)
# Doctests of the pages and of the docstrings they include (>>> blocks).
doctest_test_doctest_blocks = "default"

# -- figures: matplotlib's plot directive, run when the docs build ------------------------

# The figures alone: their code reads measured files through REPOSITORY (plot_pre_code below),
# which is the docs build's business, not the reader's.
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.figsize": (5.5, 4.0), "savefig.bbox": "tight", "font.size": 10}
plot_apply_rcparams = True
plot_pre_code = f"""
import numpy as np
import mxnet as mx
import matplotlib.pyplot as plt
import detkit
from pathlib import Path
REPOSITORY = Path({str(Path(__file__).resolve().parents[1])!r})  # measured figures live in benchmarks/results
"""

# -- MyST (the changelog is Markdown) ------------------------------------------------------

myst_heading_anchors = 3

# -- HTML ---------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"detkit {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Object detection on MXNet Gluon with swappable, pluggable components.",
    "fixed_sidebar": True,
    "show_related": False,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_show_sourcelink = False
