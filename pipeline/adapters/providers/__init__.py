"""Providers by name. ``get_provider`` is the one place that maps a name to code."""
from __future__ import annotations

from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, Provider, ProviderRequest
from pipeline.core.errors import InvalidInput

PROVIDER_NAMES = ("local", "openai", "http", "diffusers")


def get_provider(name: str, cfg) -> Provider:
    """The provider called ``name``, configured from ``cfg``."""
    if name == "local":
        from pipeline.adapters.providers.local import LocalProvider
        return LocalProvider(allow_simulate=cfg.allow_simulate)
    if name == "openai":
        from pipeline.adapters.providers.openai import OpenAIProvider
        return OpenAIProvider.from_config(cfg)
    if name == "http":
        from pipeline.adapters.providers.http import HTTPProvider
        return HTTPProvider.from_config(cfg)
    if name == "diffusers":
        # Imports no torch: the model was loaded (or not) when this worker process started.
        from pipeline.adapters.providers.diffusers import DiffusersProvider
        return DiffusersProvider()
    raise InvalidInput(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


__all__ = ["AttemptContext", "GeneratedImage", "Provider", "ProviderRequest", "get_provider", "PROVIDER_NAMES"]
