"""Providers by name. ``get_provider`` is the one place that maps a name to code."""
from __future__ import annotations

from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, Provider, ProviderRequest
from pipeline.adapters.providers.diffusers import DiffusersProvider
from pipeline.adapters.providers.http import HTTPProvider
from pipeline.adapters.providers.local import LocalProvider
from pipeline.adapters.providers.openai import OpenAIProvider
from pipeline.core.errors import InvalidInput
from pipeline.core.providers import PROVIDER_NAMES

PROVIDER_CLASSES: dict[str, type] = {
    "local": LocalProvider,
    "openai": OpenAIProvider,
    "http": HTTPProvider,
    "diffusers": DiffusersProvider,
}
"""Each provider's class by name, to read its ``runs_in_worker`` without building it (``routing``)."""


def get_provider(name: str, cfg) -> Provider:
    """The provider called ``name``, configured from ``cfg``."""
    if name == "local":
        return LocalProvider(allow_simulate=cfg.allow_simulate)
    if name == "openai":
        return OpenAIProvider.from_config(cfg)
    if name == "http":
        return HTTPProvider.from_config(cfg)
    if name == "diffusers":
        # No torch here: the model was loaded (or not) when this worker process started.
        return DiffusersProvider()
    raise InvalidInput(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


__all__ = ["AttemptContext", "GeneratedImage", "Provider", "ProviderRequest", "get_provider", "PROVIDER_CLASSES",
           "PROVIDER_NAMES"]
