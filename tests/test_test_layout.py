"""The test tree's own rules: it mirrors the package in folders, which pytest's default import mode allows
only with unique module basenames, and no module imports ``conftest`` (several folders have one, so the
name means whichever was imported first)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_names_are_unique():
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and "__pycache__" not in p.parts)
    assert not [name for name, count in names.items() if count > 1]


def test_no_test_imports_conftest():
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if any(line.lstrip().startswith(("from conftest import", "import conftest"))
                        for line in p.read_text().splitlines())]
    assert not offenders, f"import shared helpers from tests/shared_paths.py or oracles.py instead: {offenders}"
