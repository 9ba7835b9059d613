"""Where the shared real imagery lies (``../shared/data`` beside the checkout). A module of its own, not
``conftest``: several test folders have a ``conftest.py``, so ``from conftest import ...`` is ambiguous."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
S2_SCENE = SHARED_DATA / "S2A_29RKH_20200219_0_L2A"
