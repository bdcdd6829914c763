"""The notebook runner's command line and summary table."""

from __future__ import annotations

import pytest

from handbook.runner import _parse_value, main, summary_table


def test_summary_table_flattens_scalars() -> None:
    table = summary_table({"05_tiger": {"test": {"ndcg@10": 0.1}, "per_user": [1, 2], "device": "cpu"}})
    assert table.to_dict("records") == [
        {"notebook": "05_tiger", "metric": "test.ndcg@10", "value": 0.1},
        {"notebook": "05_tiger", "metric": "device", "value": "cpu"},
    ]


def test_parameter_values_are_typed() -> None:
    assert _parse_value("3") == 3
    assert _parse_value("0.5") == 0.5
    assert _parse_value("true") is True
    assert _parse_value("ml-100k") == "ml-100k"


def test_missing_notebook_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["notebooks/99_nothing.ipynb"])
    assert "99_nothing.ipynb" in capsys.readouterr().err


def test_bad_parameter_syntax_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-p", "seed", "notebooks/00_overview.ipynb"])
    assert "NAME=VALUE" in capsys.readouterr().err
