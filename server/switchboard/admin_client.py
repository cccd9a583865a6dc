"""`switchboard adapters list|add|remove|promote|rollback`: a thin client of the admin API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

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


def add_experiments_parser(sub: Any) -> None:
    exp = sub.add_parser("experiments", help="A/B experiments on a running server (admin API)")
    exp.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL), help="server URL")
    exp.add_argument("--admin-key", default=None, help="admin key (default: env SWITCHBOARD_ADMIN_KEY)")
    cmd = exp.add_subparsers(dest="experiments_command", required=True)
    report = cmd.add_parser("report", help="per-variant results, significance and a recommendation")
    report.add_argument("name")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_report(data: dict[str, Any]) -> str:
    rows = []
    for v in data["variants"]:
        ci = v["feedback_ci95"]
        rows.append(
            [
                v["variant"],
                _fmt(v["weight"], 2),
                str(v["requests"]),
                str(v["errors"]),
                str(v["completion_tokens"]),
                f"{_fmt(v['ttft_p50'])}/{_fmt(v['ttft_p95'])}",
                f"{_fmt(v['latency_p50'])}/{_fmt(v['latency_p95'])}",
                f"{_fmt(v['feedback_mean'])} (n={v['feedback_count']})",
                f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "-",
            ]
        )
    table = _table(
        rows,
        [
            "VARIANT",
            "WEIGHT",
            "REQUESTS",
            "ERRORS",
            "TOKENS",
            "TTFT p50/p95 s",
            "LATENCY p50/p95 s",
            "FEEDBACK",
            "95% CI",
        ],
    )
    p = data.get("p_value")
    verdict = f"p = {p:.4f} ({data.get('test')})" if p is not None else "no test yet"
    return (
        f"experiment {data['experiment']}\n\n{table}\n\n"
        f"significant: {'yes' if data['significant'] else 'no'}; {verdict}\n"
        f"recommendation: {data['recommendation']}"
    )


def run_experiments(args: argparse.Namespace) -> int:
    headers = admin_headers(args.admin_key)
    try:
        resp = httpx.get(f"{args.url.rstrip('/')}/admin/experiments/{args.name}", headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        print(f"switchboard: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code >= 400:
        print(f"switchboard: error {resp.status_code}: {error_message(resp)}", file=sys.stderr)
        return 1
    print(render_report(resp.json()))
    return 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


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
    out = _table(rows, ["ADAPTER", "STATE", "IN-FLIGHT", "PATH"]) if rows else "no adapters"
    if data["aliases"]:
        out += "\n\n" + _table(sorted([a, t] for a, t in data["aliases"].items()), ["ALIAS", "TARGET"])
    out += f"\n\nresident {len(data['resident'])}/{data['max_resident']}"
    return out


def run(args: argparse.Namespace) -> int:
    headers = admin_headers(args.admin_key)
    base = args.url.rstrip("/")
    command = args.adapters_command
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            if command == "list":
                resp = client.get("/admin/adapters")
            elif command == "add":
                body = {
                    "name": args.name,
                    "path": os.path.abspath(args.path),
                    "version": args.version,
                    "alias": args.alias,
                    "pinned": args.pinned,
                }
                resp = client.post("/admin/adapters", json={k: v for k, v in body.items() if v is not None})
            elif command == "remove":
                resp = client.delete(f"/admin/adapters/{args.ref}")
            elif command == "promote":
                resp = client.put(f"/admin/aliases/{args.alias}", json={"target": args.target})
            else:
                resp = client.post(f"/admin/aliases/{args.alias}/rollback")
    except httpx.HTTPError as exc:
        print(f"switchboard: cannot reach {base}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code >= 400:
        print(f"switchboard: error {resp.status_code}: {error_message(resp)}", file=sys.stderr)
        return 1
    data = resp.json()
    if command == "list":
        print(_render_list(data))
    elif command == "add":
        print(f"registered {data['ref']} from {data['path']}" + (f" (alias {data['alias']})" if data["alias"] else ""))
    elif command == "remove":
        print("removed " + ", ".join(data["removed"]))
    elif command == "promote":
        previous = f" (was {data['previous']})" if data["previous"] else ""
        print(f"{data['alias']} -> {data['target']}{previous}")
    else:
        print(f"{data['alias']} -> {data['target']} (rolled back)")
    return 0
