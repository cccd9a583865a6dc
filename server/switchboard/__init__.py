"""Switchboard: serve many LoRA adapters from one base model behind an OpenAI-compatible API."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _source_tree_version() -> str:
    """pyproject.toml's `version`, for a source tree on sys.path that was never pip-installed."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1) if match else "0.0.0+unknown"


try:
    # The one version source is pyproject.toml's `version`, as the installed package's metadata.
    __version__ = version("switchboard")
except PackageNotFoundError:
    __version__ = _source_tree_version()
