"""Student copies of the notebooks: no solutions, the by-hand mechanisms left as TODOs.

    python -m handbook.student                       # every notebook -> student/ (make student)
    python -m handbook.student --out course notebooks/05_tiger.ipynb

A chapter marks the code a student should write between two comments:

    # BEGIN SOLUTION (defines: loss_by_hand)
    ...
    # END SOLUTION

followed by a check from `handbook.checks` that compares each name with the package. The
student copy replaces the marked lines by a TODO that sets every defined name to None, so the
copy runs up to its first TODO and that check fails saying what to write; a correct answer
passes it. Cells tagged `solution` (the exercises' worked answers) are dropped, and every
output is cleared: the students run the notebooks themselves.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from handbook.io import write_text_atomic
from handbook.paths import repo_root

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION \(defines: (?P<names>[A-Za-z_][\w, ]*)\)\s*$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
SOLUTION_TAG = "solution"


class MarkerError(ValueError):
    """A BEGIN/END SOLUTION pair that does not parse; the message names the notebook and cell."""


def exercise_names(source: str, where: str = "cell") -> list[list[str]]:
    """The names each marked region of `source` defines, one list per region, in order."""
    return [names for names, _ in _regions(source, where)]


def _regions(source: str, where: str) -> list[tuple[list[str], tuple[int, int, str]]]:
    """(names, (begin line, end line, indent)) of each marked region; MarkerError if unbalanced."""
    regions, open_at = [], None
    for number, line in enumerate(source.splitlines()):
        if "BEGIN SOLUTION" in line:
            match = BEGIN.match(line)
            if match is None:
                raise MarkerError(f"{where}, line {number + 1}: write the marker as "
                                  f"'# BEGIN SOLUTION (defines: name, other)', not {line.strip()!r}")  # fmt: skip
            if open_at is not None:
                raise MarkerError(f"{where}, line {number + 1}: BEGIN SOLUTION inside the region opened at line {open_at[0] + 1}")
            names = [n.strip() for n in match["names"].split(",") if n.strip()]
            open_at = (number, names, match["indent"])
        elif END.match(line):
            if open_at is None:
                raise MarkerError(f"{where}, line {number + 1}: END SOLUTION without a BEGIN SOLUTION above it")
            regions.append((open_at[1], (open_at[0], number, open_at[2])))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}, line {open_at[0] + 1}: BEGIN SOLUTION is never closed by '# END SOLUTION'")
    return regions


def stub(source: str, where: str = "cell") -> str:
    """`source` with each marked region replaced by a TODO that sets its names to None."""
    lines = source.splitlines()
    for names, (begin, end, indent) in reversed(_regions(source, where)):
        todo = [
            f"{indent}# TODO: your code here. It must define {', '.join(names)}; the check below compares "
            + ("it" if len(names) == 1 else "them") + " with the package.",
            f"{indent}{' = '.join(names)} = None",
        ]
        lines[begin : end + 1] = todo
    return "\n".join(lines)


def student_notebook(notebook: str | Path):
    """The student version of `notebook` (an nbformat node): solutions dropped, regions stubbed."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = []
    for index, cell in enumerate(nb.cells):
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = stub(cell.source, where=f"{Path(notebook).name}, cell {index}")
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    return nb


def write_student_copies(notebooks: list[Path], out: Path) -> list[Path]:
    """Write the student copy of each notebook into `out` (atomically), with the glossary."""
    import nbformat

    written = []
    for notebook in notebooks:
        target = out / notebook.name
        write_text_atomic(target, nbformat.writes(student_notebook(notebook)) + "\n")
        written.append(target)
    glossary = repo_root() / "notebooks" / "glossary.md"
    if glossary.exists():
        shutil.copyfile(glossary, out / glossary.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=repo_root() / "student", help="default: student/")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(n) for n in notebooks if not n.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    written = write_student_copies(notebooks, args.out)
    todos = sum(source.count("# TODO: your code here") for source in (p.read_text() for p in written))
    print(f"{len(written)} student notebooks with {todos} TODOs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
