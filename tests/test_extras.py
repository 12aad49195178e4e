"""Optional extras: pyproject.toml and cage.extras agree, dev holds them, and a missing one is one clear line."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from cage.extras import EXTRAS, MissingExtraError, require_extra

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_extras_match_pyproject_and_dev_installs_what_tests_need():
    core = _names(PYPROJECT["project"]["dependencies"])
    for extra, modules in EXTRAS.items():
        assert _names(OPTIONAL[extra]) == {m for m in modules}, extra
        assert not core & set(modules), f"{extra} modules are also core dependencies"
    dev = _names(OPTIONAL["dev"])
    for extra in ("plots", "onnx", "demo"):
        assert _names(OPTIONAL[extra]) <= dev, extra


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(MissingExtraError) as caught:
        require_extra("onnx", "ONNX export")
    assert str(caught.value) == "ONNX export needs the 'onnx' extra (onnxruntime is missing): pip install 'cage[onnx]'"
    require_extra("plots", "plots")  # installed: no error


def test_cli_reports_a_missing_extra_as_a_usage_error(monkeypatch, tmp_path, capsys):
    from cage.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code = main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d"), "--plots", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("needs the 'plots' extra (matplotlib is missing): pip install 'cage[plots]'")
