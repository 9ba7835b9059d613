"""export_batch refuses a wrong request before it touches the target: nothing is created or written."""

import sys
from pathlib import Path

import pytest

import xrembed
import xrembed.testing  # noqa: F401  (dofa-tiny: registered by conftest.py)
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec
from xrembed.errors import OptionError, UnknownModelError, WeightsError

sys.path.insert(0, str(Path(__file__).parent))
from _export_scenario import spatials


def _export(target, models, **config):
    return xrembed.export_batch(spatials=spatials(1), temporal=None, models=models, target=target,
                                output=OutputSpec.pooled(), source=xrembed.sample_path(),
                                config=ExportConfig(show_progress=False, continue_on_error=True, **config))


@pytest.mark.parametrize(
    ("models", "error", "match"),
    [
        (["nope"], UnknownModelError, "unknown model 'nope'"),
        ([ExportModelRequest.configure("dofa-tiny")], WeightsError, "no official checkpoint"),
        ([ExportModelRequest.configure("dofa-tiny", weights="/no/such.pth")], WeightsError, "does not exist"),
        ([ExportModelRequest.configure("dofa-tiny", variant="huge", weights="random")], UnknownModelError, "variant"),
    ],
)
def test_model_errors_come_before_anything_is_written(tmp_path, models, error, match):
    with pytest.raises(error, match=match):
        _export(ExportTarget.combined(tmp_path / "emb.zarr"), models)
    assert list(tmp_path.iterdir()) == []  # no state folder, no manifest, no store


def test_a_path_is_not_a_target_and_a_string_is_one_model(tmp_path):
    with pytest.raises(OptionError, match=r"ExportTarget\.combined"):
        _export(str(tmp_path / "emb.zarr"), ["dofa-tiny"])
    assert list(tmp_path.iterdir()) == []
    tiny = ExportModelRequest.configure("dofa-tiny", weights="random")
    manifest = _export(ExportTarget.combined(tmp_path / "emb.zarr"), tiny)
    assert manifest["models"] == ["dofa-tiny"]


@pytest.mark.parametrize(
    "bad",
    [{"max_retries": -1}, {"retry_backoff_s": -0.5}, {"retry_backoff_s": float("nan")}, {"overwrite": "yes"},
     {"resume": "no"}, {"infer_batch_size": 0}, {"num_workers": True}],
)
def test_export_config_values_are_checked(bad):
    with pytest.raises(OptionError, match=next(iter(bad))):
        ExportConfig(**bad)
