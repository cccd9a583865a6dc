"""Regenerate docs/configuration.md from the Settings model: python docs/gen_configuration.py"""

from __future__ import annotations

from pathlib import Path

from switchboard.cli import build_parser
from switchboard.config import Settings

DOCS = Path(__file__).resolve().parent


def flags() -> dict[str, str]:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    out = {}
    for action in serve._actions:
        if action.dest in Settings.model_fields and action.option_strings:
            metavar = f" {action.metavar}" if action.metavar else ""
            out[action.dest] = action.option_strings[0] + metavar
    return out


def render() -> str:
    known = flags()
    rows = ["| setting | flag | default | what it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        if name == "cache_dir":
            default = "~/.cache/switchboard"
        rows.append(f"| `{name}` | `{known[name]}` | `{default!s}` | {field.description} |")
    head = (DOCS / "configuration.head.md").read_text()
    tail = (DOCS / "configuration.tail.md").read_text()
    return head + "\n".join(rows) + "\n" + tail


if __name__ == "__main__":
    (DOCS / "configuration.md").write_text(render())
