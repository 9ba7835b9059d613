"""The docs site builds with ``mkdocs build --strict``: every page is in the nav, every link and anchor
resolves, and the API reference renders from the docstrings (a broken docstring or a renamed public name
fails here, not on the published site)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_every_docs_page_is_built(site):
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix("") for p in (ROOT / "docs").rglob("*.md"))
    for page in pages:
        target = site / ("" if page.name == "index" else page) / "index.html"
        assert target.is_file(), f"docs/{page}.md was not built"


def test_the_api_reference_renders_the_docstrings(site):
    html = (site / "api" / "index.html").read_text()
    # Words from the docstrings themselves, not from api.md: mkdocstrings really ran.
    for name, phrase in [("embed", "reads no pixels"), ("open_raster", "open_raster"), ("EmbedOptions", "keyword")]:
        assert name in html and phrase in html, name
