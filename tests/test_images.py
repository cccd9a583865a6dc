"""Static checks of deploy/Dockerfile and deploy/Dockerfile.cuda and their .dockerignore files.

There is no Docker engine here, so nothing is built: the files are parsed and checked against the repo (every
COPY source exists and is not dockerignored), the Makefile's torch pin, the server's settings (every SWITCHBOARD_*
variable is a setting, the command loads like `switchboard serve` does) and hadolint.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from switchboard.cli import build_parser, settings_overrides
from switchboard.config import Settings, load_settings

from tests.deploy_support import (
    DOCKERFILE,
    DOCKERFILE_CUDA,
    DOCKERFILES,
    REPO,
    _command,
    _env,
    _exec_form,
    _final,
    _ignore_patterns,
    _ignored,
    _stages,
    _tool,
    _tracked,
)

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
