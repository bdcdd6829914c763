"""Where a result came from: the commit of the code that made it."""

from __future__ import annotations

import subprocess

from handbook.paths import repo_root


def git_commit() -> str | None:
    """The checkout's commit (with "+dirty" when files differ from it), or None outside git.

    Read it when a run starts: the code that runs is what was imported then, even if the
    checkout moves on during a long run.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
