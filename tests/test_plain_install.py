"""What a plain install (no extras) promises; .ci/plain_install_check.py runs the features in such a venv."""

import subprocess
import sys
from pathlib import Path

import pytest

import xrembed
from xrembed.errors import XrembedError

CHECK = Path(__file__).resolve().parents[1] / ".ci" / "plain_install_check.py"


def test_open_gee_without_its_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ee", None)  # `import ee` raises ImportError, as without the extra
    with pytest.raises(XrembedError, match=r'pip install "xrembed\[gee\]"'):
        xrembed.open_gee("dofa", spatial=xrembed.PointBuffer(-9.5, 25.0, 1000),
                         temporal=xrembed.TemporalSpec.year(2022))


def test_plain_check_refuses_an_environment_with_test_extras():
    # it would pass vacuously where a test extra supplies a missing runtime dependency
    run = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "not a plain install" in run.stderr and "pytest" in run.stderr
