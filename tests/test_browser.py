"""The website and JupyterLab, opened in a real headless Chromium (`make test-browser`).

Marked `browser` and left out of `make test` (pyproject's addopts: -m "not browser"): they start
a web server, JupyterLab and a browser. They skip, saying what to install, where Chromium,
chromedriver, selenium or the book extra is missing. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from handbook.paths import repo_root

pytestmark = pytest.mark.browser

ROOT = repo_root()
# a figure; figures and equations; saved progress-bar widgets (which must not reach for a CDN)
BOOK_CHAPTERS = ["00_overview", "01_data", "02_item_embeddings"]
BOOK_PAGES = ["README.html", "notebooks/glossary.html", "docs/references.html"] + [
    f"notebooks/{name}.html" for name in BOOK_CHAPTERS
]
LAB_CHAPTER = "00_overview"


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return "needs Chromium and chromedriver: apt-get install chromium chromium-driver (Debian/Ubuntu)"
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium: make test-browser installs it (pip install -e '.[book]')"
    return None


def _missing_book() -> str | None:
    """Why the website cannot be built here, or None when it can."""
    missing = [m for m in ("sphinx", "myst_nb", "mathjax") if importlib.util.find_spec(m) is None]
    return f"needs the book extra ({', '.join(missing)}): pip install -e '.[book]'" if missing else None


def _wait(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by chromedriver, with the console log recorded."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The console messages at level SEVERE since the last call (reading the log empties it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# ---------------------------------------------------------------------------- the website


@pytest.fixture(scope="module")
def book_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small book (two chapters, glossary, references) built and served on 127.0.0.1."""
    reason = _missing_book()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "HANDBOOK_BOOK_CHAPTERS": ",".join(BOOK_CHAPTERS)}
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-c", str(ROOT / "docs"), str(ROOT), str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, f"sphinx-build failed:\n{build.stdout}\n{build.stderr}"
    # served over http rather than file://: MathJax's web fonts are refused from file:// URLs
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file handler that does not print one line per request."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


# resolves once MathJax 3 has typeset the page; each typeset formula holds an <mjx-container>
TYPESET_STATE = """
const done = arguments[arguments.length - 1];
const math = Array.from(document.querySelectorAll('.math.notranslate'));  // Sphinx's formulas
const report = () => done({
  formulas: math.length,
  typeset: math.filter(el => el.querySelector('mjx-container')).length,
  errors: document.querySelectorAll('mjx-merror').length,
});
if (math.length === 0) { report(); return; }  // Sphinx loads MathJax only where a formula is
const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(report) : setTimeout(wait, 100);
wait();
"""

IMAGE_STATE = """
return Array.from(document.images).map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}));
"""


@pytest.mark.parametrize("page", BOOK_PAGES)
def test_book_page_loads_with_images_and_equations(browser: Any, book_url: str, page: str) -> None:
    console_errors(browser)  # drop what an earlier page left
    browser.get(f"{book_url}/{page}")
    _wait(lambda: browser.execute_script("return document.readyState") == "complete", 30, f"{page} to load")
    browser.set_script_timeout(60)
    math = browser.execute_async_script(TYPESET_STATE)
    assert math["typeset"] == math["formulas"], f"{page}: {math['formulas'] - math['typeset']} formulas left as TeX"
    assert math["errors"] == 0, f"{page}: {math['errors']} MathJax errors"
    images = browser.execute_script(IMAGE_STATE)
    assert [i["src"] for i in images if not i["ok"]] == [], f"{page}: images that did not load"
    assert console_errors(browser) == [], f"{page}: console errors"
    # the site works offline: everything the page fetched came from the site itself
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert [url for url in fetched if not url.startswith(book_url)] == [], f"{page}: fetched from elsewhere"
    if page == "notebooks/01_data.html":  # the checks above must have something to check
        assert math["formulas"] > 0 and len(images) > 0


def test_book_lists_the_chapters_in_order(browser: Any, book_url: str) -> None:
    browser.get(f"{book_url}/index.html")  # forwards to README.html, the landing page
    _wait(lambda: browser.current_url.endswith("README.html"), 30, "index.html to forward to README.html")
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('.toctree-l1 > a')).map(a => a.getAttribute('href'))"
    )
    expected = [f"notebooks/{name}.html" for name in BOOK_CHAPTERS] + ["notebooks/glossary.html", "docs/references.html"]
    assert links == expected


# what a reader of a chapter sees of the navigation, the code and the tables (window 1280 px wide)
READING_STATE = """
const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0
  && getComputedStyle(el).visibility !== 'hidden'; };
const links = title => Array.from(document.querySelectorAll(`div.related a[title="${title}"]`))
  .filter(visible).map(a => a.getAttribute('href'));
// a code block is clipped where its lines are wider than the block and the block neither wraps them
// nor lets the reader scroll to them
const blocks = Array.from(document.querySelectorAll('div.body pre'));
const clipped = blocks.filter(pre => pre.scrollWidth > pre.clientWidth + 1
  && !['auto', 'scroll'].includes(getComputedStyle(pre).overflowX)).map(pre => pre.textContent.slice(0, 80));
const inputs = Array.from(document.querySelectorAll('div.cell_input pre'));
const overflowing = inputs.filter(pre => pre.scrollWidth > pre.clientWidth + 1).map(pre => pre.textContent.slice(0, 80));
// the same code blocks without the wrap rule: some line must be too long, or the check above checks nothing
const unwrapped = inputs.filter(pre => { const old = pre.style.whiteSpace; pre.style.whiteSpace = 'pre';
  const wide = pre.scrollWidth > pre.clientWidth + 1; pre.style.whiteSpace = old; return wide; }).length;
const xrefs = Array.from(document.querySelectorAll('div.body a.reference.internal > code'))
  .map(code => [code.textContent, code.parentElement.getAttribute('href')]);
const cells = Array.from(document.querySelectorAll('table.dataframe td')).map(td => td.textContent.trim());
return {previous: links('Previous document'), next: links('Next document'), clipped, overflowing, unwrapped,
        inputs: inputs.length, xrefs, cells};
"""

SIDEBAR_TOP = "return document.querySelector('div.sphinxsidebar').getBoundingClientRect().top"


def test_book_chapter_reads_with_links_wrapped_code_and_tidy_tables(browser: Any, book_url: str) -> None:
    browser.get(f"{book_url}/notebooks/01_data.html")
    _wait(lambda: browser.execute_script("return document.readyState") == "complete", 30, "01_data to load")
    state = browser.execute_script(READING_STATE)
    # previous and next chapter, above and below the chapter, shown
    assert state["previous"] == ["00_overview.html", "00_overview.html"]
    assert state["next"] == ["02_item_embeddings.html", "02_item_embeddings.html"]
    # "Comes after `00_overview`. Next: `02_item_embeddings`." links both chapters
    assert ["00_overview", "00_overview.html"] in state["xrefs"]
    assert ["02_item_embeddings", "02_item_embeddings.html"] in state["xrefs"]
    # no code line cut off at the column's right edge: code cells wrap, outputs scroll
    assert state["inputs"] > 0 and state["unwrapped"] > 0
    assert state["overflowing"] == [], "code cells wider than the column"
    assert state["clipped"] == [], "code blocks cut off at the right edge"
    # the tables show numbers as the prose does: no NaN, at most 4 decimals
    assert state["cells"], "01_data shows DataFrame tables"
    assert [c for c in state["cells"] if c == "NaN" or re.fullmatch(r"-?\d+\.\d{5,}", c)] == []
    # the sidebar (the chapter list) is still in view at the foot of the chapter
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert 0 <= browser.execute_script(SIDEBAR_TOP) < 100


def test_book_tables_tidied_as_docs_conf_says() -> None:
    """The table rules of docs/conf.py on cells that the committed notebooks hold."""
    if _missing_book():
        pytest.skip(_missing_book())
    spec = importlib.util.spec_from_file_location("book_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)

    def table(*rows: tuple[str, ...]) -> list[list[str]]:
        html = "<table class=\"dataframe\"><tbody>" + "".join(
            "<tr><th>x</th>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
        ) + "</tbody></table>"
        tidied = conf.tidy_table(html)
        return [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr>.*?</tr>", tidied)]

    # 07_rpg's decoding table: a count padded to the column's 4 decimals
    assert table(("0.0275", "1349.0000"), ("0.0186", "231.6257")) == [["0.0275", "1349"], ["0.0186", "231.6257"]]
    # 08_acerec's ablation table: an object column .round(4) left alone, and NaN
    assert table(("0.043478", "45.066373", "NaN"), ("-0.000038", "63.774494", "RPG")) == [
        ["0.0435", "45.0664", "\u2013"], ["0.0000", "63.7745", "RPG"]
    ]
    # a column of whole numbers written as floats; fractions and one-decimal numbers stay
    assert table(("16.0", "1.000", "65.0"), ("8.0", "0.998", "244.4")) == [["16", "1.000", "65.0"], ["8", "0.998", "244.4"]]


# ---------------------------------------------------------------------------- JupyterLab


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 with a token, serving a copy of one chapter without outputs."""
    if _missing_browser():
        pytest.skip(_missing_browser())
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.skip("needs JupyterLab: pip install -e '.[notebooks]'")
    root, out = tmp_path / "lab", tmp_path / "out"
    root.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / f"{LAB_CHAPTER}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):  # results into tmp_path, not runs/
                cell.source = f"OUTPUT_DIR = {str(out)!r}\n" + "\n".join(
                    line for line in cell.source.splitlines() if not line.startswith("OUTPUT_DIR")
                )
    nbformat.write(nb, root / f"{LAB_CHAPTER}.ipynb")

    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(tmp_path / name.lower())  # no settings or open tabs of the user's own Lab
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        # window.jupyterapp lets the test call Lab's own commands (Run All Cells) as the menu does
        "--LabApp.expose_app_in_browser=True",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root; Lab refuses without this
        command.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def status() -> bool:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{(tmp_path / 'lab.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        _wait(status, 90, "jupyter lab to answer", interval=0.5)
        yield {"url": f"{base}/lab/tree/{LAB_CHAPTER}.ipynb?token={token}", "out": out}
    finally:
        # the shutdown API stops the kernels too; terminate/kill only if it did not
        try:
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=10).close()
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()


# the notebook open in Lab, read through Lab's own application object
NOTEBOOK_STATE = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext) return null;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
return {
  kernel: kernel ? kernel.status : null,
  kernel_name: kernel ? kernel.name : null,
  code_cells: cells.length,
  executed: cells.filter(c => c.model.executionCount !== null).length,
  errors: cells.flatMap(c => c.model.outputs.toJSON()).filter(o => o.output_type === 'error'),
  stdout: cells.flatMap(c => c.model.outputs.toJSON()).filter(o => o.name === 'stdout').map(o => [].concat(o.text).join('')).join(''),
  rendered_outputs: document.querySelectorAll('.jp-OutputArea-output').length,
  rendered_images: document.querySelectorAll('.jp-OutputArea-output img').length,
};
"""


def test_jupyterlab_runs_a_chapter_on_the_handbook_kernel(browser: Any, lab: dict[str, Any]) -> None:
    browser.get(lab["url"])
    state = _wait(
        lambda: (s := browser.execute_script(NOTEBOOK_STATE)) and s["kernel"] == "idle" and s,
        120, "the notebook to open and its kernel to start", interval=0.5,
    )
    assert state["kernel_name"] == "python3" and state["code_cells"] > 0
    assert state["rendered_outputs"] == 0, "the copy was saved without outputs"
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = _wait(
        lambda: (s := browser.execute_script(NOTEBOOK_STATE)) and s["executed"] == s["code_cells"]
        and s["kernel"] == "idle" and s,
        300, "every cell to run", interval=0.5,
    )
    assert state["errors"] == [], json.dumps(state["errors"])[:2000]
    assert state["rendered_outputs"] > 0 and state["rendered_images"] > 0
    assert "device: " in state["stdout"] and "GFLOP/s" in state["stdout"]
    # Lab draws only the cells in view: the last cell's output is there after Run All
    text = browser.execute_script("return document.querySelector('.jp-Notebook').innerText")
    assert "wrote ['device', 'matmul_gflops'" in text
    # the handbook package ran in the kernel: the chapter's last cell wrote its metrics
    assert json.loads((lab["out"] / "metrics.json").read_text())["matrix_size"] > 0
