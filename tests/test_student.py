"""Student copies (`make student`): solutions gone, each exercise a TODO its check rejects."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import nbformat
import pytest

from handbook import checks
from handbook.runner import execute_notebook
from handbook.student import (
    BEGIN,
    END,
    SOLUTION_TAG,
    MarkerError,
    exercise_names,
    main,
    stub,
    student_notebook,
)
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


class _GlobalNames(ast.NodeVisitor):
    """The lines where a cell binds and reads each global name (a function's, lambda's or
    comprehension's own names left out); `early` holds bindings a same-line read already sees."""

    def __init__(self) -> None:
        self.bound: list[tuple[int, str]] = []
        self.early: set[tuple[int, str]] = set()
        self.read: list[tuple[int, str]] = []
        self.local: list[set[str]] = []

    def visit_Name(self, node: ast.Name) -> None:
        if any(node.id in scope for scope in self.local):
            return
        if isinstance(node.ctx, ast.Load):
            self.read.append((node.lineno, node.id))
        elif isinstance(node.ctx, ast.Store):
            self.bound.append((node.lineno, node.id))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):  # x += 1 reads x too
            self.visit_Name(ast.Name(node.target.id, ast.Load(), lineno=node.lineno))
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        if not self.local:
            self.bound += [(node.lineno, (a.asname or a.name).split(".")[0]) for a in node.names]

    visit_ImportFrom = visit_Import

    def _early(self, target: ast.AST, line: int) -> None:
        self.early |= {(line, n.id) for n in ast.walk(target) if isinstance(n, ast.Name)}

    def visit_For(self, node: ast.For) -> None:
        self._early(node.target, node.lineno)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._early(item.optional_vars, node.lineno)
        self.generic_visit(node)

    def _scope(self, own: set[str], body: list[ast.AST]) -> None:
        self.local.append(own)
        for child in body:
            self.visit(child)
        self.local.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda) and not self.local:
            self.bound.append((node.lineno, node.name))
        for default in [*node.args.defaults, *node.args.kw_defaults, *getattr(node, "decorator_list", [])]:
            if default is not None:
                self.visit(default)
        args = node.args
        own = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
        for n in (n for child in body for n in ast.walk(child)):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                own |= {(a.asname or a.name).split(".")[0] for a in n.names}
        self._scope(own, body)

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.local:
            self.bound.append((node.lineno, node.name))
        self.generic_visit(node)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        own = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        self._scope(own, list(ast.iter_child_nodes(node)))

    visit_SetComp = visit_GeneratorExp = visit_DictComp = visit_ListComp


# names a notebook may read without binding them: Python's builtins and IPython's
PREDEFINED = set(dir(builtins)) | {"display", "get_ipython", "In", "Out", "_", "__", "___"}


def names_only_a_solution_binds(notebook: Path) -> list[str]:
    """Each read, in the student copy after a `# END SOLUTION`, of a name that only removed code binds.

    The student copy keeps every code cell not tagged `solution`, with each marked region
    replaced by a TODO that binds the region's `defines:`. A name that a region binds without
    defining it (or that only a solution-tagged cell binds) must not be read after the region
    unless kept code binds it first: else a student whose correct answer names its variables
    differently gets a NameError.
    """
    nb = nbformat.read(notebook, as_version=4)
    bound: set[str] = set()  # bound so far in the student copy (kept code and the stubs)
    only_solution: dict[str, str] = {}  # name -> the removed code that binds it
    leaks = []
    for index, cell in enumerate(cell for cell in nb.cells if cell.cell_type == "code"):
        names = _GlobalNames()
        names.visit(ast.parse(cell.source))
        if SOLUTION_TAG in cell.metadata.get("tags", []):  # dropped from the student copy
            for _, name in names.bound:
                only_solution.setdefault(name, f"the solution cell (code cell {index})")
            continue
        regions, begin = [], None  # (BEGIN line, END line, defines), 1-based
        for number, line in enumerate(cell.source.splitlines(), start=1):
            if (match := BEGIN.match(line)) is not None:
                begin = (number, [n.strip() for n in match["names"].split(",") if n.strip()])
            elif END.match(line) and begin is not None:
                regions.append((begin[0], number, begin[1]))
        events = [(line, 1, name, "bind") for line, name in names.bound]
        events += [(line, 2 if (line, name) in names.early else 0, name, "read") for line, name in names.read]
        events += [(r[0], 1, name, "stub") for r in regions for name in r[2]]
        for line, _, name, kind in sorted(events):
            region = next((r for r in regions if r[0] < line < r[1]), None)
            if kind == "stub":
                bound.add(name)
            elif region is not None:  # inside a solution: gone from the student copy
                if kind == "bind" and name not in region[2]:
                    only_solution.setdefault(name, f"the solution at line {region[0]} of code cell {index}")
            elif kind == "bind":
                bound.add(name)
            elif name in only_solution and name not in bound | PREDEFINED:
                leaks.append(f"{notebook.name}, code cell {index}, line {line} reads `{name}`, which only "
                             f"{only_solution[name]} binds: add it to `defines:` or bind it outside the solution")  # fmt: skip
    return leaks


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_read_after_a_solution_is_defined_or_bound_outside_it(notebook: Path) -> None:
    assert names_only_a_solution_binds(notebook) == []


def test_the_solution_leak_check_names_what_only_the_solution_binds(tmp_path: Path) -> None:
    cell = "import torch\n# BEGIN SOLUTION (defines: loss)\ntargets = torch.ones(3)\nloss = targets.mean()\n# END SOLUTION\nprint(loss, targets)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbformat.write(nb, tmp_path / "leak.ipynb")
    [leak] = names_only_a_solution_binds(tmp_path / "leak.ipynb")
    assert "line 6 reads `targets`, which only the solution at line 2 of code cell 0 binds" in leak
    nb.cells[0].source = cell.replace("# BEGIN SOLUTION (defines: loss)\ntargets = torch.ones(3)", "targets = torch.ones(3)\n# BEGIN SOLUTION (defines: loss)")
    nbformat.write(nb, tmp_path / "fixed.ipynb")
    assert names_only_a_solution_binds(tmp_path / "fixed.ipynb") == []


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
