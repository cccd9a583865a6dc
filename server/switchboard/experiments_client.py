"""`switchboard experiments list|create|report|conclude|stop|delete`: a thin client of the admin API's
/admin/experiments."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .admin_client import DEFAULT_URL, AdminClient, AdminError, fail
from .experiments.render import FORMATS, render, table


def add_parser(sub: Any) -> None:
    exp = sub.add_parser("experiments", help="A/B experiments on a running server (admin API)")
    exp.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL), help="server URL")
    exp.add_argument("--admin-key", default=None, help="admin key (default: env SWITCHBOARD_ADMIN_KEY)")
    cmd = exp.add_subparsers(dest="experiments_command", required=True)
    cmd.add_parser("list", help="every experiment with its state and weights")
    create = cmd.add_parser("create", help="create (or replace) an experiment; the first variant is the control")
    create.add_argument("name")
    create.add_argument("variants", nargs="+", metavar="NAME[@VERSION][=WEIGHT]", help="weight 1 when not given")
    create.add_argument("--sticky", default="user", help="user (default), none, or header:<Name>")
    create.add_argument("--alias", help="the alias the experiment tests (conclude points it at the winner)")
    create.add_argument("--alpha", type=float, default=0.05, help="the most a false 'promote' may be (0.05)")
    create.add_argument("--planned-n", type=int, help="feedback scores per variant for Welch's fixed-horizon test")
    for flag, text in GUARDRAIL_FLAGS.items():
        create.add_argument(f"--{flag.replace('_', '-')}", type=float, dest=flag, help=text)
    report = cmd.add_parser("report", help="per-variant results, the comparisons with the control and the decision")
    report.add_argument("name")
    report.add_argument("--format", choices=FORMATS, default="text")
    conclude = cmd.add_parser("conclude", help="promote WINNER: move the tested alias to it and end the experiment")
    conclude.add_argument("name")
    conclude.add_argument("winner")
    conclude.add_argument("--alias", help="the alias to move (default: the experiment's)")
    for verb, text in (("stop", "stop it: the control serves its requests"), ("delete", "delete it and its report")):
        cmd.add_parser(verb, help=text).add_argument("name")


GUARDRAIL_FLAGS = {
    "max_error_rate_increase": "guardrail: cut a variant whose error rate exceeds the control's by more (0-1)",
    "max_latency_p95_ratio": "guardrail: cut a variant whose p95 latency is above this many times the control's",
    "max_feedback_drop": "guardrail: cut a variant whose mean feedback is this much below the control's",
}


def parse_variants(items: list[str]) -> dict[str, float]:
    """`["sales@v1=90", "sales@v2=10"]` -> {"sales@v1": 90.0, "sales@v2": 10.0}, in order."""
    out: dict[str, float] = {}
    for item in items:
        target, _, weight = item.partition("=")
        try:
            out[target] = float(weight) if weight else 1.0
        except ValueError:
            raise AdminError(400, f"variant {item!r}: the weight after '=' must be a number") from None
    return out


def render_list(data: dict[str, Any]) -> str:
    rows = [
        [
            e["experiment"],
            e["state"],
            e["control"],
            ", ".join(f"{v['variant']}={v['weight']:g}" for v in e["variants"]),
            e["sticky"],
            e.get("alias") or "-",
            e.get("winner") or "-",
        ]
        for e in data["experiments"]
    ]
    header = ["EXPERIMENT", "STATE", "CONTROL", "WEIGHTS", "STICKY", "ALIAS", "WINNER"]
    return table(rows, header) if rows else "no experiments"


def run(args: argparse.Namespace) -> int:
    client = AdminClient(args.url, args.admin_key, timeout=60)
    command = args.experiments_command
    try:
        if command == "list":
            print(render_list(client.experiments()))
        elif command == "create":
            definition: dict[str, Any] = {
                "variants": [{"variant": v, "weight": w} for v, w in parse_variants(args.variants).items()],
                "sticky": args.sticky,
                "alpha": args.alpha,
                **({"alias": args.alias} if args.alias else {}),
                **({"planned_n": args.planned_n} if args.planned_n else {}),
            }
            limits = {k: getattr(args, k) for k in GUARDRAIL_FLAGS if getattr(args, k) is not None}
            if limits:
                definition["guardrails"] = limits
            data = client.put_experiment(args.name, definition)
            weights = ", ".join(f"{v['variant']}={v['weight']:g}" for v in data["variants"])
            print(f"experiment {args.name}: {weights} (control {data['control']}, sticky {data['sticky']})")
        elif command == "report":
            data = client.experiment_report(args.name)
            print(json.dumps(data, indent=2) if args.format == "json" else render(data, args.format), end="")
        elif command == "conclude":
            data = client.conclude(args.name, args.winner, args.alias)
            moved = f"; {data['alias']} -> {data['winner']} (was {data['previous']})" if data["alias"] else ""
            print(f"experiment {args.name} concluded: winner {data['winner']}{moved}")
        elif command == "stop":
            client.stop(args.name)
            print(f"experiment {args.name} stopped: its control serves its requests")
        else:
            client.delete_experiment(args.name)
            print(f"experiment {args.name} deleted")
    except AdminError as exc:
        return fail(exc)
    return 0
