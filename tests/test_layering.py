"""The package's layers point one way (models and sources never import each other, export sits below the
public functions, the cache below everything): the import-linter contracts in pyproject.toml, function-level
imports included, checked on every test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    script = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(script).exists():
        pytest.fail("lint-imports is missing: install the test extras (pip install -e '.[test]').")
    return [script, "--no-cache"]


def test_import_contracts_hold():
    result = subprocess.run(_lint_imports(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contracts_catch_a_back_edge(tmp_path):
    """A models module importing a source breaks a contract (the check can fail)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    names = [c["name"] for c in config["contracts"]]
    assert any("models know nothing of sources" in n for n in names)
    assert any("sources know nothing of models" in n for n in names)
    assert any("export sits below" in n for n in names)

    package = tmp_path / "xrembed"
    shutil.copytree(REPO / "xrembed", package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (package / "models" / "leak.py").write_text("def f():\n    from ..sources import gee  # noqa: F401\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(_lint_imports(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert result.returncode != 0
    assert "xrembed.models.leak -> xrembed.sources.gee" in result.stdout
