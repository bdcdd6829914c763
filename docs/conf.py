"""Sphinx configuration of the handbook's website (`make book` -> build/book/).

Why Sphinx + myst-nb: both install from PyPI and build with no network at all. Jupyter Book 2
(the MyST engine) fetches its site template and a Node.js runtime on first build, and
Jupyter Book 1 pins an older Sphinx; plain Sphinx with myst-nb reads the committed .ipynb files
with their outputs (nb_execution_mode = "off": the site never re-executes a notebook) and the
Markdown pages through MyST.

Why MathJax from django-static-mathjax: Sphinx loads MathJax from a CDN by default, which
leaves equations as raw TeX offline. That PyPI wheel (no dependencies, Django not needed) is
MathJax 3.2.2's own distribution as plain files; its es5/ folder is copied into _static/mathjax
and mathjax_path points there, so equations typeset offline. (jupyter-server-mathjax ships a
trimmed MathJax 2 whose only output, HTML-CSS, makes Chromium log a refused web-font request.)

Build from the repository root (the source folder is the root, this folder only configures):
    sphinx-build -c docs . build/book
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import mathjax  # the django-static-mathjax wheel: MathJax 3 as files
import nbformat

ROOT = Path(__file__).resolve().parent.parent

project = "Semantic-ID Generative Recommendation Handbook"
author = "the handbook's authors"
extensions = ["myst_nb"]

# The README is the landing page; the chapters follow in their numbered order.
root_doc = "README"
# HANDBOOK_BOOK_CHAPTERS=00_overview,01_data builds only those chapters (the browser test's small book).
_only = [name for name in os.environ.get("HANDBOOK_BOOK_CHAPTERS", "").split(",") if name]
CHAPTERS = _only or sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
include_patterns = ["README.md", "notebooks/glossary.md", "docs/references.md"]
include_patterns += [f"notebooks/{name}.ipynb" for name in CHAPTERS]
exclude_patterns = ["build", ".venv", "runs", "**/.ipynb_checkpoints"]

nb_execution_mode = "off"
# tqdm's saved progress-bar widgets would load the widget manager and require.js from a CDN
# (console errors offline); without it a widget shows its saved plain-text form.
nb_ipywidgets_js = {}
# .py twins are jupytext copies of the .ipynb files; only the .ipynb (with outputs) are read.
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# README links to files outside the book (sweeps/, handbook/...): keep them as plain links.
suppress_warnings = ["myst.xref_missing", "myst.header", "misc.highlighting_failure"]

# alabaster, the theme Sphinx ships with, with options and docs/_static/custom.css for a book:
# a wider column, a sidebar that stays in view, previous/next at the top and foot of every page
# and code that wraps inside the column. (sphinx-book-theme would add pydata-sphinx-theme and its
# dependencies to the extra for the same.)
html_theme = "alabaster"
html_theme_options = {
    "page_width": "900px",  # below this width the sidebar moves on top; custom.css sets the width
    "sidebar_width": "250px",
    "fixed_sidebar": True,
    "show_relbars": True,
    "relbar_border": "#ddd",
}
html_static_path = ["_static"]  # relative to docs/: its custom.css replaces alabaster's empty one
html_title = project
html_show_copyright = False  # no copyright line is set: the footer would show a bare "©."
# an icon of our own: without one every browser asks for /favicon.ico and logs a 404 error
html_favicon = "favicon.svg"
# the SVG output draws glyphs from the script's own font data: no web-font files to fetch
mathjax_path = "mathjax/tex-svg.js"
MATHJAX_DIR = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def chapter_toctree() -> str:
    """A hidden MyST toctree of the chapters, the glossary and the references."""
    entries = [f"notebooks/{name}" for name in CHAPTERS] + ["notebooks/glossary", "docs/references"]
    return "\n\n```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Chapters\n\n" + "\n".join(entries) + "\n```\n"


def collected_references() -> str:
    """Each chapter's `## References` section, under the chapter's title, for one references page."""
    parts = ["# References\n\nThe references of every chapter, in chapter order.\n"]
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        cells = [c.source for c in nb.cells if c.cell_type == "markdown"]
        title = next((m.group(1) for c in cells if (m := re.match(r"#\s+(.+)", c))), name)
        refs = [c for c in cells if re.match(r"##\s+References", c)]
        if refs:
            body = re.sub(r"^##\s+References\s*", "", refs[0])
            parts.append(f"## {title}\n\n{body}\n\n[Open the chapter](../notebooks/{name}.ipynb)\n")
    return "\n".join(parts)


def add_generated_content(app, docname: str, source: list[str]) -> None:
    """Give the README its chapter toctree and fill the references page, at read time.

    The README stays a plain GitHub README (no Sphinx directives in it); the references page
    is built from the notebooks, so it cannot drift from them.
    """
    if docname == root_doc:
        source[0] += chapter_toctree()
    elif docname == "docs/references":
        source[0] = collected_references()


def write_index_and_mathjax(app, exception: Exception | None) -> None:
    """Copy MathJax into _static/mathjax and write index.html, which forwards to README.html."""
    if exception is None and app.builder.format == "html":
        # MathJax's loader fetches its extensions (input/, a11y/...) beside tex-svg.js on demand
        shutil.copytree(MATHJAX_DIR, Path(app.outdir, "_static", "mathjax"), dirs_exist_ok=True)
        page = '<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=README.html">'
        Path(app.outdir, "index.html").write_text(page + '<a href="README.html">README</a>\n')


def setup(app) -> None:
    """Register the read-time hook and the copies made after the build."""
    app.connect("source-read", add_generated_content)
    app.connect("build-finished", write_index_and_mathjax)
