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

import itertools
import os
import re
import shutil
from pathlib import Path

import mathjax  # the django-static-mathjax wheel: MathJax 3 as files
import nbformat
from docutils import nodes

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


# a chapter named in code, `07_rpg` or `07_rpg.ipynb`, as the chapters' "Next: `08_acerec`" lines do
CHAPTER_NAME = re.compile(r"(\d\d_[a-z0-9_]+)(?:\.ipynb)?")


def link_chapter_names(app, doctree: nodes.document, docname: str) -> None:
    """Make each inline `NN_name` that names a chapter of this book a link to that chapter.

    The notebooks name the chapters before and after them in inline code ("Next: `08_acerec`");
    on the site those names become links. (A Markdown link in the notebook, `[08_acerec](08_acerec.ipynb)`,
    is left as it is: it already links, here and in JupyterLab.)
    """
    if app.builder.format != "html":
        return
    for literal in list(doctree.findall(nodes.literal)):
        match = CHAPTER_NAME.fullmatch(literal.astext())
        target = f"notebooks/{match.group(1)}" if match else None
        if target is None or match.group(1) not in CHAPTERS or target == docname:
            continue
        if _inside_link(literal):
            continue
        link = nodes.reference("", "", internal=True, refuri=app.builder.get_relative_uri(docname, target))
        literal.replace_self(link)
        link += literal


def _inside_link(node: nodes.Node) -> bool:
    """Whether `node` already sits inside a link."""
    while node.parent is not None:
        node = node.parent
        if isinstance(node, nodes.reference):
            return True
    return False


# pandas' HTML tables: one <table> per DataFrame, <td>value</td> per cell (a styled table's
# cells carry attributes and are left as its author formatted them)
TABLE = re.compile(r"<table.*?</table>", re.S)
TABLE_ROW = re.compile(r"<tr[^>]*>.*?</tr>", re.S)
DATAFRAME_CELL = re.compile(r"<td>([^<]*)</td>")
NUMBER = re.compile(r"-?\d+(?:\.(\d+))?")
MISSING = {"NaN", "nan", "<NA>"}


def whole_column(values: tuple[str, ...]) -> bool:
    """Whether a column holds whole numbers only, some written as floats (`16.0`, `8.0`, `4`)."""
    numbers = [NUMBER.fullmatch(v.strip()) for v in values if v.strip() and v.strip() not in MISSING]
    return bool(numbers) and all(m and set(m.group(1) or "0") == {"0"} for m in numbers) and any(
        m.group(1) for m in numbers
    )


def tidy_number(text: str, whole: bool) -> str:
    """One table cell as the prose writes numbers: at most 4 decimals, whole numbers whole, NaN a dash.

    `0.043478` -> `0.0435` (an object column, which `.round(4)` leaves alone); `1349.0000` -> `1349`
    (a count padded to a column's 4 decimals); `16.0` -> `16` in a column of whole numbers;
    `NaN` -> an en dash. Other numbers (`65.0` beside `244.4`, `1.000` beside `0.998`, `0.0000`
    among metrics) stay as pandas wrote them, as does any text.
    """
    value = text.strip()
    if value in MISSING:
        return "\u2013"
    match = NUMBER.fullmatch(value)
    if match is None or match.group(1) is None:
        return text
    if whole:
        return str(int(float(value)))
    if len(match.group(1)) > 4:
        value = f"{float(value):.4f}"
    if float(value) == 0:
        return value.lstrip("-")
    whole_part, decimals = value.split(".")
    return whole_part if len(decimals) >= 4 and set(decimals) == {"0"} else value


def tidy_table(table: str) -> str:
    """A DataFrame's HTML table with its numbers tidied (tidy_number), column by column."""
    rows = [DATAFRAME_CELL.findall(row) for row in TABLE_ROW.findall(table)]
    whole = [whole_column(column) for column in itertools.zip_longest(*[r for r in rows if r], fillvalue="")]

    def tidy_row(row: re.Match) -> str:
        column = itertools.count()
        return DATAFRAME_CELL.sub(lambda cell: f"<td>{tidy_number(cell.group(1), whole[next(column)])}</td>", row.group(0))

    return TABLE_ROW.sub(tidy_row, table)


def tidy_dataframe_tables(app, doctree: nodes.document, docname: str) -> None:
    """Reformat the numbers in the notebooks' saved DataFrame tables (tidy_table).

    The committed outputs are never re-executed, so the site formats them as it renders them.
    """
    for raw in list(doctree.findall(nodes.raw)):
        html = raw.astext()
        if "html" in raw.get("format", "").split() and 'class="dataframe' in html:
            tidied = TABLE.sub(lambda table: tidy_table(table.group(0)), html)
            raw.replace_self(nodes.raw("", tidied, format=raw["format"]))


def write_index_and_mathjax(app, exception: Exception | None) -> None:
    """Copy MathJax into _static/mathjax and write index.html, which forwards to README.html."""
    if exception is None and app.builder.format == "html":
        # MathJax's loader fetches its extensions (input/, a11y/...) beside tex-svg.js on demand
        shutil.copytree(MATHJAX_DIR, Path(app.outdir, "_static", "mathjax"), dirs_exist_ok=True)
        page = '<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=README.html">'
        Path(app.outdir, "index.html").write_text(page + '<a href="README.html">README</a>\n')


def setup(app) -> None:
    """Register the read-time hook, the page transforms and the copies made after the build."""
    app.connect("source-read", add_generated_content)
    app.connect("doctree-resolved", link_chapter_names)
    app.connect("doctree-resolved", tidy_dataframe_tables)
    app.connect("build-finished", write_index_and_mathjax)
