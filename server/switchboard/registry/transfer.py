"""`switchboard registry migrate|export|import`: move a registry between the JSON file and PostgreSQL,
so a one-process user can go to replicas without registering every adapter again."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import SwitchboardError
from .registry import Registry
from .store import FORMAT_VERSION, open_store


def add_parser(sub: Any) -> None:
    registry = sub.add_parser("registry", help="the registry's store: migrate, export, import")
    cmd = registry.add_subparsers(dest="registry_command", required=True)
    for name, text in (
        ("migrate", "create or migrate the PostgreSQL schema (servers also do it on start)"),
        ("export", "write the registry as JSON (registry.json's format) to a file or stdout"),
        ("import", "load a JSON export into an empty registry (or replace one with --replace)"),
    ):
        p = cmd.add_parser(name, help=text)
        p.add_argument("--registry", help="postgresql://… URL (default: the JSON file in --state-dir)")
        p.add_argument("--state-dir", type=Path, default=Path("state"), help="dir of registry.json")
        if name == "export":
            p.add_argument("--out", default="-", help="file to write (default: stdout)")
        if name == "import":
            p.add_argument("file", help="a JSON export (or a registry.json)")
            p.add_argument("--replace", action="store_true", help="replace a registry that is not empty")


def run(args: argparse.Namespace) -> int:
    try:
        store = open_store(args.registry, args.state_dir)
        if args.registry_command == "migrate":
            print(f"registry schema up to date in {args.registry or args.state_dir}")
        elif args.registry_command == "export":
            state = store.load() or {}
            text = json.dumps({"format": FORMAT_VERSION, **state}, indent=2, sort_keys=True) + "\n"
            if args.out == "-":
                sys.stdout.write(text)
            else:
                Path(args.out).write_text(text)
                print(f"exported {len(state.get('adapters', {}))} adapters to {args.out}", file=sys.stderr)
        else:
            return _import(store, args)
    except SwitchboardError as exc:
        print(f"switchboard registry: error: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"switchboard registry: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _import(store: Any, args: argparse.Namespace) -> int:
    data: dict[str, Any] = json.loads(Path(args.file).read_text())
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{args.file}: unknown registry format {data.get('format')!r}")
    incoming = Registry.of_state(data)  # parsed (and 0.3.1's "extra" section upgraded) like a registry.json
    with store.transaction() as latest:
        current = latest if latest is not None else store.load()
        if current and current.get("adapters") and not args.replace:
            print(
                "switchboard registry: error: the target registry is not empty; pass --replace to overwrite it",
                file=sys.stderr,
            )
            return 1
        store.save(incoming.state())
    print(f"imported {len(incoming.names())} adapters, {len(incoming.aliases())} aliases", file=sys.stderr)
    return 0
