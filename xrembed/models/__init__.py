"""Model families, the registry and checkpoint handling (torch is imported only when a model is built).

``describe_model`` (models and products together) lives in :mod:`xrembed.catalog`, above this package.
"""

from .registry import get_adapter, list_models, register_model

__all__ = ["get_adapter", "list_models", "register_model"]
