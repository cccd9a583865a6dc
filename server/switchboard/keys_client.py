"""`switchboard keys create|list|revoke`: a thin client of the admin API's /admin/keys (docs/tenants.md)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .admin_client import DEFAULT_URL, AdminClient, AdminError, fail
from .experiments.render import table


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys (tenants) on a running server (admin API)")
    keys.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL), help="server URL")
    keys.add_argument("--admin-key", default=None, help="admin key (default: env SWITCHBOARD_ADMIN_KEY)")
    cmd = keys.add_subparsers(dest="keys_command", required=True)
    create = cmd.add_parser("create", help="create a key; it is printed once, only its hash is stored")
    create.add_argument("name", help="unique name: a-z, 0-9, '-', '_' (shown in metrics and logs)")
    create.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="GLOB",
        help="adapter or experiment names it may use (fnmatch, repeatable; none = everything), e.g. 'after-sales*'",
    )
    create.add_argument("--rpm", type=int, help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute, prompt + max_tokens (default: unlimited)")
    create.add_argument("--max-streams", type=int, help="requests open at once (default: unlimited)")
    cmd.add_parser("list", help="every key: name, what it may use, limits (never the key)")
    cmd.add_parser("revoke", help="revoke key NAME at once").add_argument("name")


def _limit(value: int | None) -> str:
    return str(value) if value else "-"


def render_list(data: dict[str, Any]) -> str:
    rows = [
        [
            k["name"],
            ",".join(k["allow"]) or "*",
            _limit(k["rpm"]),
            _limit(k["tpm"]),
            _limit(k["max_streams"]),
            _when(k["created_at"]),
            _when(k["revoked_at"]) if k.get("revoked_at") else "-",
        ]
        for k in data["keys"]
    ]
    columns = ["KEY", "ALLOW", "RPM", "TPM", "STREAMS", "CREATED (UTC)", "REVOKED (UTC)"]
    return table(rows, columns) if rows else "no keys"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def run(args: argparse.Namespace) -> int:
    client = AdminClient(args.url, args.admin_key, timeout=30)
    try:
        if args.keys_command == "create":
            data = client.create_key(args.name, args.allow, args.rpm, args.tpm, args.max_streams)
            print(f"created key {data['name']}; it is shown only now, keep it safe:\n{data['key']}")
        elif args.keys_command == "list":
            print(render_list(client.keys()))
        else:
            print(f"revoked key {client.revoke_key(args.name)['revoked']}")
    except AdminError as exc:
        return fail(exc)
    return 0
