"""autoinfer: entrypoint and init toolkit for LLM inference containers."""

__version__ = "0.1.0"
