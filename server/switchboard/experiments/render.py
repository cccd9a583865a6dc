"""An experiment's report (decision.report's JSON) as readable text or markdown: one line per variant,
each comparison with the control, the decision and why. Used by `GET /admin/experiments/{name}?format=`
and `switchboard experiments report`."""

from __future__ import annotations

import time
from typing import Any

FORMATS = ("json", "text", "markdown")


def table(rows: list[list[str]], header: list[str], markdown: bool = False) -> str:
    """Rows under a header: aligned columns, or a markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def _pair(pair: list[Any] | None, signed: bool = False) -> str:
    """An interval [low, high] (None: none yet)."""
    if not pair:
        return "-"
    return f"{_fmt(pair[0], signed=signed)} .. {_fmt(pair[1], signed=signed)}"


def _variant_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in data["variants"]:
        name = v["variant"] + (" (control)" if v["variant"] == data["control"] else "")
        name += " (cut off)" if v.get("cut") else ""
        rows.append(
            [
                name,
                _fmt(v["weight"], 2),
                str(v["requests"]),
                f"{v['errors']} ({_fmt(v['error_rate'])})" if v["requests"] else "0",
                str(v["prompt_tokens"] + v["completion_tokens"]),
                f"{_fmt(v['ttft_p50'])} / {_fmt(v['ttft_p95'])}",
                f"{_fmt(v['latency_p50'])} / {_fmt(v['latency_p95'])}",
                f"{_fmt(v['feedback_mean'])} (n={v['feedback_count']})",
                _pair(v["feedback_interval"]),
            ]
        )
    return rows


HEADER = [
    "variant",
    "weight",
    "requests",
    "errors (rate)",
    "tokens",
    "TTFT p50 / p95 s",
    "latency p50 / p95 s",
    "feedback mean",
    "always-valid interval",
]


def render(data: dict[str, Any], fmt: str = "text") -> str:
    """`data` (a report) as "text" or "markdown"."""
    md = fmt == "markdown"
    title = f"experiment {data['experiment']} ({data['state']}, control {data['control']}, sticky {data['sticky']})"
    out = [f"## {title}" if md else title, "", table(_variant_rows(data), HEADER, md), ""]
    comparisons = [
        [c["variant"], _fmt(c["difference"], signed=True), _pair(c["interval"], signed=True)]
        + [_fmt(c["p_value"], 4), c["verdict"]]
        for c in data["comparisons"]
    ]
    if comparisons:
        head = ["vs control", "difference", "always-valid interval", "p (adjusted)", "verdict"]
        out += [table(comparisons, head, md), ""]
    out.append(f"method: {data['method']}")
    bullet = "- " if md else ""
    out.append(f"{bullet}**decision: {data['decision']}**" if md else f"decision: {data['decision']}")
    out.append(f"{bullet}why: {data['reason']}")
    for event in data.get("guardrails", {}).get("events", []):
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(event["at"]))
        out.append(f"{bullet}cut off by guardrail {event['guardrail']} at {at}: {event['variant']}: {event['reason']}")
    if data.get("concluded"):
        c = data["concluded"]
        out.append(f"{bullet}{data['state']}: winner {c['winner'] or '-'}, alias {c['alias'] or '-'}")
    return "\n".join(out) + "\n"
