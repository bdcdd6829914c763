"""Where things live: the repository root, runs/ and .cache/, whatever the working directory."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """Return the handbook checkout that holds `start` (default: the working directory).

    Notebooks run with their own folder as working directory (JupyterLab, nbval) or the
    checkout's (papermill from the Makefile); resolving paths from the root makes both agree.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "handbook").is_dir():
            return folder
    return here


def resolve(path: str | os.PathLike) -> Path:
    """Resolve a relative path against the repository root; absolute paths pass through."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def output_dir(path: str | os.PathLike) -> Path:
    """Resolve a notebook's OUTPUT_DIR parameter and create the folder."""
    folder = resolve(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_dir(kind: str) -> Path:
    """A folder under .cache/ (git-ignored) for recomputable artefacts such as embeddings."""
    return resolve(Path(".cache") / kind)
