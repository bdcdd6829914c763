"""Student copies (`make student`): solutions gone, each exercise a TODO its check rejects."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from handbook import checks
from handbook.runner import execute_notebook
from handbook.student import MarkerError, exercise_names, main, stub, student_notebook
from tests.test_notebooks import SMALL

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))

EXERCISE = """\
import torch
x = torch.arange(4.0)
# BEGIN SOLUTION (defines: total, mean)
total = x.sum()
mean = total / len(x)
# END SOLUTION
checks.close("total", total, torch.tensor(6.0))
checks.close("mean", mean, torch.tensor(1.5))
"""


def test_the_stub_sets_every_name_to_none_and_its_check_says_so() -> None:
    assert exercise_names(EXERCISE) == [["total", "mean"]]
    student = stub(EXERCISE)
    assert "total.sum()" not in student and "total = mean = None" in student
    assert "# TODO: your code here. It must define total, mean" in student
    exec(compile(EXERCISE, "solution", "exec"), {"checks": checks})  # the solution passes its check
    with pytest.raises(checks.CheckFailed, match="`total` is not computed yet"):
        exec(compile(student, "student", "exec"), {"checks": checks})
    wrong = student.replace("total = mean = None", "total = x.sum()\nmean = total / 3")
    with pytest.raises(checks.CheckFailed, match="`mean` differs"):
        exec(compile(wrong, "wrong", "exec"), {"checks": checks})


def test_an_indented_region_keeps_its_indent() -> None:
    source = "with ctx:\n    a = 1\n    # BEGIN SOLUTION (defines: b)\n    b = a + 1\n    # END SOLUTION\n    use(b)"
    assert stub(source).splitlines()[2:4] == [
        "    # TODO: your code here. It must define b; the check below compares it with the package.",
        "    b = None",
    ]


@pytest.mark.parametrize(
    "source, message",
    [
        ("# BEGIN SOLUTION (defines: a)\na = 1", "line 1: BEGIN SOLUTION is never closed"),
        ("a = 1\n# END SOLUTION", "line 2: END SOLUTION without a BEGIN"),
        ("# BEGIN SOLUTION\na = 1\n# END SOLUTION", "line 1: write the marker as"),
        ("# BEGIN SOLUTION (defines: a)\n# BEGIN SOLUTION (defines: b)\n# END SOLUTION", "line 2: BEGIN SOLUTION inside"),
    ],
)
def test_broken_markers_are_named(source: str, message: str) -> None:
    with pytest.raises(MarkerError, match=f"05_tiger.ipynb, cell 3, {message}"):
        stub(source, where="05_tiger.ipynb, cell 3")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_has_no_solution_and_checks_every_todo(notebook: Path) -> None:
    teacher = nbformat.read(notebook, as_version=4)
    student = student_notebook(notebook)
    assert not any("solution" in cell.metadata.get("tags", []) for cell in student.cells)
    assert all(not cell.get("outputs") for cell in student.cells if cell.cell_type == "code")
    text = "\n".join(cell.source for cell in student.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    code = [cell for cell in teacher.cells if cell.cell_type == "code"]
    for i, cell in enumerate(code):
        for names in exercise_names(cell.source, where=f"{notebook.name}, code cell {i}"):
            # each defined name is checked after the region: later in its cell, or in the next code cell
            after = cell.source.split("# END SOLUTION", 1)[1] + (code[i + 1].source if i + 1 < len(code) else "")
            for name in names:
                assert re.search(rf"checks\.\w+\([^\n]*\b{name}\b", after), f"{notebook.name}: no check reads {name}"


def test_every_by_hand_chapter_has_exercises() -> None:
    counts = {nb.stem[:2]: sum(len(exercise_names(c.source)) for c in nbformat.read(nb, as_version=4).cells) for nb in NOTEBOOKS}
    assert all(counts[chapter] >= 1 for chapter in ("03", "04", "05", "07", "08")), counts


@pytest.mark.notebook
def test_a_student_copy_runs_up_to_its_first_todo(tmp_path: Path) -> None:
    import papermill

    assert main(["--out", str(tmp_path / "student"), str(NOTEBOOKS[3])]) == 0  # 03_tokenizers
    copy = tmp_path / "student" / "03_tokenizers.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        execute_notebook(copy, tmp_path / "run", SMALL["03_tokenizers"])
    assert failure.value.ename == "CheckFailed" and "`hand_dist` is not computed yet" in failure.value.evalue
    ran = nbformat.read(tmp_path / "run" / copy.name, as_version=4)
    first_todo = next(i for i, c in enumerate(ran.cells) if "# TODO: your code here" in c.source)
    executed = [i for i, c in enumerate(ran.cells) if c.cell_type == "code" and c.get("execution_count")]
    # everything up to the TODO ran, and the failing check is the next code cell: nothing after it
    failed = max(executed)
    assert first_todo in executed and all(c.cell_type != "code" for c in ran.cells[first_todo + 1 : failed])
    assert any(o.get("ename") == "CheckFailed" for o in ran.cells[failed].outputs)
