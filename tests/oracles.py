"""Reference implementations used as test oracles (torchgeo), imported behind the torchvision shim.

PyPI's torchvision 0.28.0 is a CUDA build: on CPU torch its ``_C.so`` fails to load and ``import
torchvision`` raises ``operator torchvision::nms does not exist``. timm and torchgeo import torchvision,
so the shim declares the two op schemas and imports again (see ``reference/models.md`` §1.2). It only
patches on that exact error, so a working torchvision (e.g. on a CUDA machine) is left alone.
"""

from __future__ import annotations

import sys

import torch

_TORCHVISION_LIBRARY = None


def import_torchvision_cpu_safe():
    global _TORCHVISION_LIBRARY
    try:
        import torchvision

        return torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _TORCHVISION_LIBRARY = torch.library.Library("torchvision", "DEF")
        _TORCHVISION_LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision

        return torchvision


def torchgeo_dofa():
    """torchgeo's DOFA module (``torchgeo.models.dofa``), or skip the test if it cannot be imported."""
    import pytest

    try:
        import_torchvision_cpu_safe()
        from torchgeo.models import dofa
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"torchgeo reference unavailable: {err}")
    return dofa


def torchgeo_croma():
    """torchgeo's CROMA module (``torchgeo.models.croma``), or skip the test if it cannot be imported."""
    import pytest

    try:
        import_torchvision_cpu_safe()
        from torchgeo.models import croma
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"torchgeo reference unavailable: {err}")
    return croma


def torchgeo_panopticon():
    """torchgeo's Panopticon module (``torchgeo.models.panopticon``, with timm), or skip the test."""
    import pytest

    try:
        import_torchvision_cpu_safe()
        from torchgeo.models import panopticon
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"torchgeo reference unavailable: {err}")
    return panopticon


def torchgeo_copernicusfm():
    """torchgeo's Copernicus-FM module (``torchgeo.models.copernicusfm``, with timm), or skip the test."""
    import pytest

    try:
        import_torchvision_cpu_safe()
        from torchgeo.models import copernicusfm
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"torchgeo reference unavailable: {err}")
    return copernicusfm
