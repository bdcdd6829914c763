"""Checks of a by-hand computation against the package, with messages a student can act on.

Each chapter builds a method's core by hand, then checks it equals the package:

    checks.close("loss_by_hand", loss_by_hand, tiger.loss(batch))

In the student copy (`make student`, `handbook.student`) the by-hand code is a TODO stub that
leaves its answers at None; the same check then fails saying which name is still missing, and
on a wrong answer it says how it differs (shape, or the worst element and the tolerance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# (rtol, atol) of torch.testing.assert_close per dtype; integers compare as float64.
DEFAULT_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


class CheckFailed(AssertionError):
    """A by-hand answer that does not match the package; the message says how and what to do."""


def _fail(name: str, problem: str, hint: str) -> None:
    raise CheckFailed(f"`{name}` {problem}" + (f"\nHint: {hint}" if hint else ""))


def _not_missing(name: str, answer: Any, hint: str) -> None:
    if answer is None or answer is Ellipsis:
        _fail(name, "is not computed yet: write the code at its TODO, above, then run this check again.", hint)


def computed(hint: str = "", **answers: Any) -> None:
    """Raise CheckFailed for the first of `answers` (name=value) still None, before a check unpacks it."""
    for name, answer in answers.items():
        _not_missing(name, answer, hint)


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return torch.as_tensor(np.asarray(value))


def close(
    name: str,
    answer: Any,
    expected: Any,
    *,
    hint: str = "",
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Raise CheckFailed unless `answer` equals `expected` in shape and, within tolerance, in value.

    Tensors, arrays, numbers and nested lists are accepted; the comparison is in float64, so
    a float32 answer passes against a float64 expectation. `rtol`/`atol` default to
    `torch.testing.assert_close`'s tolerances for the less precise of the two dtypes.
    """
    _not_missing(name, answer, hint)
    got, want = _as_tensor(answer), _as_tensor(expected)
    if got.shape != want.shape:
        _fail(name, f"has shape {tuple(got.shape)}; the package's has {tuple(want.shape)}.", hint)
    coarser = max(_float(got), _float(want), key=lambda dtype: torch.finfo(dtype).eps)
    default_rtol, default_atol = DEFAULT_TOLERANCES[coarser]  # assert_close's for the coarser dtype
    rtol, atol = default_rtol if rtol is None else rtol, default_atol if atol is None else atol
    try:
        torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol, equal_nan=True)
    except AssertionError as error:
        _fail(name, f"differs from the package's value:\n{error}", hint)


def _float(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.float64


def equal(name: str, answer: Any, expected: Any, *, hint: str = "") -> None:
    """Raise CheckFailed unless `answer` equals `expected` exactly (codes, item ids, masks, lists)."""
    _not_missing(name, answer, hint)
    if isinstance(expected, (torch.Tensor, np.ndarray)) or isinstance(answer, (torch.Tensor, np.ndarray)):
        got, want = _as_tensor(answer), _as_tensor(expected)
        if got.shape != want.shape:
            _fail(name, f"has shape {tuple(got.shape)}; the package's has {tuple(want.shape)}.", hint)
        wrong = got != want
        if bool(wrong.any()):
            first = tuple(int(i) for i in torch.nonzero(wrong)[0])
            _fail(name, f"differs at {int(wrong.sum())} of {wrong.numel()} places; the first is {first}: "
                  f"{got[first].item()} where the package has {want[first].item()}.", hint)  # fmt: skip
        return
    if _normalise(answer) != _normalise(expected):
        _fail(name, f"is {answer!r}; the package gives {expected!r}.", hint)


def _normalise(value: Any) -> Any:
    """Tuples and lists compare alike; numpy scalars as Python numbers."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_normalise(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
