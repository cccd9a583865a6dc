"""Adapter versions, aliases, pins and experiment definitions, and where they are stored."""

from .refs import BASE, AdapterRef, check_name, not_found, served_by
from .registry import AdapterEntry, Registry, VersionEntry

__all__ = ["BASE", "AdapterEntry", "AdapterRef", "Registry", "VersionEntry", "check_name", "not_found", "served_by"]
