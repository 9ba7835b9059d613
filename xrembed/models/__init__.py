"""Model families, the registry and checkpoint handling (torch is imported only when a model is built)."""

from .registry import describe_model, get_adapter, list_models, register_model

__all__ = ["describe_model", "get_adapter", "list_models", "register_model"]
