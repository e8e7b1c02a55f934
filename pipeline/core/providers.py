"""The provider names a job may ask for: the one table of them. No I/O here.

A leaf module so that the settings (``pipeline.config``) and the request
schemas can check names without importing every provider's code.
"""
from __future__ import annotations

PROVIDER_NAMES = ("local", "openai", "http", "diffusers")
"""Every provider ``pipeline.adapters.providers.get_provider`` knows, by name."""
