"""rs-embed's ``Model`` class: one model's settings, held once, for many calls of the functional API.

``Model(name, ...)`` runs the same code as :func:`~xrembed.get_embedding` and its siblings; it adds no
state beyond the settings (the loaded model lives in the per-process cache, as for every call).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import api
from .requests import POOLED
from .specs import FetchSpec, InputPrepSpec, OutputSpec, SensorSpec, TemporalSpec

__all__ = ["Model"]


class Model:
    """A model with its request settings (rs-embed's ``rs_embed.Model``).

    Parameters
    ----------
    name
        A model id or alias (``xrembed.list_models(include_aliases=True)``) or a precomputed product.
    backend, device, sensor, fetch, modality, output, input_prep
        As for :func:`~xrembed.get_embedding`; used by every call of this object.
    **model_kwargs
        ``.rsembed.embed`` keywords (``variant=``, ``weights=``, ``bands=``, ``batch_size=``, ...) and the
        functional API's ``source=`` / ``ee_init_kwargs=``. Unknown names are refused here, before any fetch.

    Examples
    --------
    >>> import xrembed
    >>> m = xrembed.Model("dofa", variant="base", output=xrembed.OutputSpec.grid())
    >>> m.describe()["embed_dim"]
    768
    >>> emb = m.get_embedding(xrembed.PointBuffer(-9.5, 25.0, 1120),              # doctest: +SKIP
    ...                       temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"))
    """

    def __init__(
        self,
        name: str,
        *,
        backend: str = "auto",
        device: str = "auto",
        sensor: SensorSpec | None = None,
        fetch: FetchSpec | None = None,
        modality: str | None = None,
        output: OutputSpec | str = POOLED,
        input_prep: InputPrepSpec | str | None = None,
        **model_kwargs: Any,
    ) -> None:
        from . import batch
        from .errors import SpecError
        from .models.registry import resolve_model_id
        from .sources.precomputed import is_product
        from .tiling import check_input_prep

        self.name = name
        self.backend, self.device = backend, device
        self.sensor, self.fetch, self.modality = sensor, fetch, modality
        self.output = OutputSpec(output) if isinstance(output, str) else output
        self.input_prep = input_prep
        self.source = model_kwargs.pop("source", None)
        self.ee_init_kwargs = model_kwargs.pop("ee_init_kwargs", None)
        self.model_kwargs = model_kwargs
        if sensor is not None and fetch is not None:
            raise SpecError("pass sensor= or fetch= (overrides on the model's default sensor), not both.")
        if not is_product(name):  # an unknown model or keyword fails now, not at the first call
            resolve_model_id(name)
            batch.check_embed_keywords(model_kwargs, where=f"Model({name!r}, ...)")
            check_input_prep(name, input_prep, model_kwargs.get("variant"))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
        return f"Model({self.name!r}, backend={self.backend!r}, output={self.output!r}" + (
            f", {settings})" if settings else ")"
        )

    def _common(self) -> dict:
        return {
            "sensor": self.sensor, "fetch": self.fetch, "modality": self.modality, "output": self.output,
            "backend": self.backend, "device": self.device, "input_prep": self.input_prep, "source": self.source,
            "ee_init_kwargs": self.ee_init_kwargs, **self.model_kwargs,
        }

    def get_embedding(self, spatial, *, temporal: TemporalSpec | None = None, **overrides: Any) -> api.Embedding:
        """One ROI's :class:`~xrembed.Embedding` (:func:`~xrembed.get_embedding` with these settings)."""
        return api.get_embedding(self.name, spatial=spatial, temporal=temporal, **{**self._common(), **overrides})

    def get_embeddings_batch(
        self, spatials: Sequence, *, temporal: TemporalSpec | None = None, **overrides: Any
    ) -> list[api.Embedding]:
        """Many ROIs with one model load (:func:`~xrembed.get_embeddings_batch` with these settings)."""
        return api.get_embeddings_batch(
            self.name, spatials=spatials, temporal=temporal, **{**self._common(), **overrides}
        )

    def get_embeddings_batch_from_inputs(
        self,
        *,
        spatials: Sequence,
        input_chws: Sequence,
        temporal: TemporalSpec | None = None,
        sensor: SensorSpec | None = None,
        model_config: dict | None = None,
        output: OutputSpec | None = None,
        backend: str = "tensor",
        device: str | None = None,
        fetch_metas: Sequence | None = None,
    ) -> list[api.Embedding]:
        """Embed arrays the caller already has (:func:`~xrembed.get_embeddings_batch_from_inputs`)."""
        kwargs = {**self.model_kwargs, **dict(model_config or {})}
        return api.get_embeddings_batch_from_inputs(
            self.name, spatials=spatials, input_chws=input_chws, temporal=temporal,
            sensor=sensor if sensor is not None else self.sensor, modality=self.modality,
            output=output if output is not None else self.output, backend=backend,
            device=device if device is not None else self.device, input_prep=self.input_prep,
            fetch_metas=fetch_metas, **kwargs,
        )

    def describe(self) -> dict:
        """The model's input contract (:func:`~xrembed.describe_model`), for this object's variant."""
        from .catalog import describe_model
        from .sources.precomputed import is_product

        if is_product(self.name):
            return describe_model(self.name)
        return describe_model(self.name, variant=self.model_kwargs.get("variant"))

    @staticmethod
    def list_models(*, include_aliases: bool = False) -> list[str]:
        """The registered model ids (:func:`~xrembed.list_models`)."""
        from .catalog import list_models

        return list_models(include_aliases=include_aliases)
