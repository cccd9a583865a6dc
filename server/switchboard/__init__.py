"""Switchboard: serve many LoRA adapters from one base model behind an OpenAI-compatible API."""

__version__ = "0.1.0"
