"""Engines: one protocol (base.py), implementations per backend (hf.py; vllm.py imported lazily)."""
