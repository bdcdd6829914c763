"""Overrides of the paper configs: `make_config` (a model's full config), the type check of every
override against its default, and the parsing of the command line's `-o NAME=VALUE`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from handbook.experiment.configs import CONFIGS, RPG_PER_DATASET, _check_model
from handbook.experiment.datasets import dataset_slug

# Overrides whose values go beyond their default's type: the types accepted and how to say so.
_ALSO_ACCEPTED: dict[str, tuple[tuple[type, ...], str]] = {"amp": ((bool, str), 'true, false, "bf16" or "fp16"')}


def _convert(value: Any, reference: Any) -> tuple[bool, Any]:
    """(True, `value` in `reference`'s type) where that is lossless (1 -> 1.0, "true" -> True), else (False, None)."""
    if isinstance(reference, bool):
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return True, value.lower() == "true"
    elif isinstance(reference, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
    elif isinstance(reference, float) or reference is None:  # None: no model gives a typed default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value) if reference is not None else value
    elif isinstance(reference, str):
        if isinstance(value, str):
            return True, value
    elif isinstance(reference, (list, tuple)):
        if isinstance(value, (list, tuple)):
            items = [_convert(item, reference[0]) if reference else (True, item) for item in value]
            if all(ok for ok, _ in items):
                return True, [item for _, item in items]
    else:
        return True, value
    return False, None


def _type_name(reference: Any) -> str:
    """What an override of a value like `reference` must be, in words."""
    if isinstance(reference, bool):
        return "true or false"
    if isinstance(reference, int):
        return "an integer"
    if isinstance(reference, str):
        return "a string"
    if isinstance(reference, (list, tuple)):
        return "a list" + (f" of {_type_name(reference[0]).removeprefix('an ').removeprefix('a ')}s" if reference else "")
    return "a number"


def _cli_text(value: Any) -> str:
    """`value` as it is written after -o NAME=: strings bare, everything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _coerce(name: str, value: Any, default: Any, model: str = "") -> Any:
    """An override converted to its default's type where that is lossless (1 -> 1.0, "true" -> True).

    Raises a ValueError naming the override, `model`, the type expected and an example. None
    (null) is accepted where some model's default is None (grad_clip).
    """
    # A default of None says nothing of the type: another model's default for the name may.
    typed = [c[name] for c in CONFIGS.values() if c.get(name) is not None]
    reference = default if default is not None else (typed[0] if typed else None)
    nullable = any(name in c and c[name] is None for c in CONFIGS.values())
    if value is None and nullable:
        return None
    also, described = _ALSO_ACCEPTED.get(name, ((), ""))
    if isinstance(value, also):
        return value
    ok, converted = _convert(value, reference)
    if ok:
        return converted
    expected = described or _type_name(reference) + (" or null" if nullable else "")
    example = _cli_text(reference if reference is not None else 0.5)
    of = f" of {model}" if model else ""
    raise ValueError(
        f"override {name}={_cli_text(value)}: {name}{of} takes {expected} (default {_cli_text(default)}), "
        f"e.g. -o {name}={example}"
    )


def make_config(model: str, dataset: str | Path, **overrides: Any) -> dict[str, Any]:
    """The full config of `model` on `dataset`: paper defaults, per-dataset values, then overrides."""
    name = _check_model(model)
    config = copy.deepcopy(CONFIGS[name])
    if name == "rpg":  # ACERec's paper uses one setting on every dataset
        per_dataset = RPG_PER_DATASET.get(dataset_slug(dataset), {})
        config.update({k: v for k, v in per_dataset.items() if k in config})
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"unknown override(s) {', '.join(unknown)} for {name}; valid names: {', '.join(sorted(config))}"
        )
    for key, value in overrides.items():
        config[key] = _coerce(key, value, config[key], name)
    return config


def _parse_value(text: str) -> Any:
    """A -o value as JSON (numbers, booleans, lists, null) or else as a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: list[str], models: list[str]) -> dict[str, Any]:
    """NAME=VALUE strings -> {name: value}; each name must be a config value of some chosen model.

    Each value must fit the type of that value's default (`_coerce`): a ValueError says which not.
    """
    overrides: dict[str, Any] = {}
    known = set().union(*(CONFIGS[m] for m in models))
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"-o {item!r}: expected NAME=VALUE, e.g. -o epochs=1")
        if key not in known:
            valid = "; ".join(f"{m}: {', '.join(sorted(CONFIGS[m]))}" for m in models)
            raise ValueError(f"-o {key}: no chosen model has this setting. Valid names per model: {valid}")
        parsed = _parse_value(value)
        # Checked against every chosen model's default now, before data loading or fitting.
        for model in (m for m in models if key in CONFIGS[m]):
            overrides[key] = _coerce(key, parsed, CONFIGS[model][key], model)
    return overrides
