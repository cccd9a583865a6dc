"""`switchboard adapters list|add|remove|promote|rollback`: a thin client of the admin API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from .experiments.render import table

DEFAULT_URL = "http://127.0.0.1:8000"


def add_parser(sub: Any) -> None:
    adapters = sub.add_parser("adapters", help="manage adapters on a running server (admin API)")
    adapters.add_argument(
        "--url", default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL), help="server URL (env SWITCHBOARD_URL)"
    )
    adapters.add_argument("--admin-key", default=None, help="admin key (default: env SWITCHBOARD_ADMIN_KEY)")
    cmd = adapters.add_subparsers(dest="adapters_command", required=True)
    cmd.add_parser("list", help="adapters, versions, aliases and residency")
    add = cmd.add_parser("add", help="register a PEFT dir (a new version if the name exists)")
    add.add_argument("name")
    add.add_argument("path")
    add.add_argument("--version")
    add.add_argument("--alias")
    add.add_argument("--pinned", action="store_true", help="never evict this version")
    remove = cmd.add_parser("remove", help="remove NAME (all versions) or NAME@VERSION")
    remove.add_argument("ref")
    promote = cmd.add_parser("promote", help="point ALIAS at NAME@VERSION (atomic)")
    promote.add_argument("alias")
    promote.add_argument("target")
    rollback = cmd.add_parser("rollback", help="point ALIAS back at its previous target")
    rollback.add_argument("alias")


def error_message(resp: httpx.Response) -> str:
    """The message of an OpenAI-shaped error response (or its raw text)."""
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text


def admin_headers(key: str | None) -> dict[str, str]:
    key = key or os.environ.get("SWITCHBOARD_ADMIN_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


class AdminError(Exception):
    """A request to the admin API failed: `status` 0 when the server could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminClient:
    """The admin API over HTTP: one method per call, the JSON answer back, AdminError on failure.
    Used by `switchboard adapters|experiments` and by `switchboard train --register`."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 300) -> None:
        self.url = url.rstrip("/")
        self.headers = admin_headers(key)
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise AdminError(0, f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            raise AdminError(resp.status_code, error_message(resp))
        data: dict[str, Any] = resp.json()
        return data

    def adapters(self) -> dict[str, Any]:
        return self._call("GET", "/admin/adapters")

    def register(
        self,
        name: str,
        path: str | Path,
        version: str | None = None,
        alias: str | None = None,
        pinned: bool = False,
    ) -> dict[str, Any]:
        """Register the PEFT dir at `path` (made absolute here) as a new version of `name`."""
        body = {"name": name, "path": os.path.abspath(path), "version": version, "alias": alias, "pinned": pinned}
        return self._call("POST", "/admin/adapters", {k: v for k, v in body.items() if v is not None})

    def remove(self, ref: str) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/adapters/{ref}")

    def promote(self, alias: str, target: str) -> dict[str, Any]:
        return self._call("PUT", f"/admin/aliases/{alias}", {"target": target})

    def rollback(self, alias: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/aliases/{alias}/rollback")

    # API keys (`switchboard keys`, keys_client.py)
    def keys(self) -> dict[str, Any]:
        return self._call("GET", "/admin/keys")

    def create_key(
        self,
        name: str,
        allow: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_streams: int | None = None,
    ) -> dict[str, Any]:
        """Create key `name`; the answer holds the key itself (`key`), which is never shown again."""
        body = {"name": name, "allow": allow or [], "rpm": rpm, "tpm": tpm, "max_streams": max_streams}
        return self._call("POST", "/admin/keys", {k: v for k, v in body.items() if v is not None})

    def revoke_key(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/keys/{name}")

    # experiments (`switchboard experiments`, experiments_client.py)
    def experiments(self) -> dict[str, Any]:
        return self._call("GET", "/admin/experiments")

    def put_experiment(self, name: str, definition: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/admin/experiments/{name}", definition)

    def experiment_report(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/experiments/{name}")

    def conclude(self, name: str, winner: str, alias: str | None = None) -> dict[str, Any]:
        body = {"winner": winner, **({"alias": alias} if alias else {})}
        return self._call("POST", f"/admin/experiments/{name}/conclude", body)

    def stop(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/experiments/{name}/stop")

    def delete_experiment(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/experiments/{name}")


def fail(exc: AdminError) -> int:
    if exc.status == 0:
        print(f"switchboard: {exc.message}", file=sys.stderr)
        return 2
    print(f"switchboard: error {exc.status}: {exc.message}", file=sys.stderr)
    return 1


def _render_list(data: dict[str, Any]) -> str:
    rows = []
    for adapter in data["adapters"]:
        for v in adapter["versions"]:
            flags = [
                f
                for f, on in (
                    ("current", v["version"] == adapter["current"]),
                    ("pinned", v["pinned"]),
                    ("resident", v["resident"]),
                )
                if on
            ]
            rows.append([v["ref"], ",".join(flags), str(v["in_flight"]), v["path"]])
    out = table(rows, ["ADAPTER", "STATE", "IN-FLIGHT", "PATH"]) if rows else "no adapters"
    if data["aliases"]:
        out += "\n\n" + table(sorted([a, t] for a, t in data["aliases"].items()), ["ALIAS", "TARGET"])
    out += f"\n\nresident {len(data['resident'])}/{data['max_resident']}"
    return out


def run(args: argparse.Namespace) -> int:
    client = AdminClient(args.url, args.admin_key, timeout=120)
    command = args.adapters_command
    try:
        if command == "list":
            print(_render_list(client.adapters()))
        elif command == "add":
            data = client.register(args.name, args.path, args.version, args.alias, args.pinned)
            alias = f" (alias {data['alias']})" if data["alias"] else ""
            print(f"registered {data['ref']} from {data['path']}{alias}")
        elif command == "remove":
            print("removed " + ", ".join(client.remove(args.ref)["removed"]))
        elif command == "promote":
            data = client.promote(args.alias, args.target)
            previous = f" (was {data['previous']})" if data["previous"] else ""
            print(f"{data['alias']} -> {data['target']}{previous}")
        else:
            data = client.rollback(args.alias)
            print(f"{data['alias']} -> {data['target']} (rolled back)")
    except AdminError as exc:
        return fail(exc)
    return 0
