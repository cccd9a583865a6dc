"""Settings: one pydantic-settings model read from CLI flags, SWITCHBOARD_* env vars and a YAML file.

Priority, highest first: command-line flags, environment variables, the YAML config file, defaults.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .models import DEFAULT_CACHE_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_ADAPTER_DIR = REPO_ROOT / "adapters"

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("switchboard_config", default=None)


class RouteRule(BaseModel):
    """Send requests whose `model` is the base model id to `adapter` when every given condition matches."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(description="Adapter name, alias or NAME@VERSION to route to ('base' for the bare model).")
    path_prefix: str | None = Field(
        default=None,
        description="Match when the request path starts with this, e.g. /scenarios/after-sales/.",
    )
    header: str | None = Field(default=None, description="Match on this request header (case-insensitive name).")
    value: str | None = Field(default=None, description="Required value of `header` (any value when omitted).")
    api_key: str | None = Field(
        default=None,
        description="Match requests made with this inference API key, and bind it: a request with the key that "
        "names another adapter (X-Adapter or model) gets 403 (docs/tenants.md).",
    )

    @model_validator(mode="after")
    def _has_condition(self) -> RouteRule:
        if not (self.path_prefix or self.header or self.api_key):
            raise ValueError("a route rule needs at least one of path_prefix, header or api_key")
        if self.value is not None and not self.header:
            raise ValueError("a route rule's 'value' needs a 'header' to compare with")
        return self


class AdapterSampling(BaseModel):
    """One adapter's sampling defaults: used for each field its requests leave unset (docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="Default temperature.")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Default top_p.")
    top_k: int | None = Field(default=None, ge=-1, description="Default top_k (-1 or 0: off).")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="Default min_p.")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Default presence_penalty.")
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Default frequency_penalty.")
    repetition_penalty: float | None = Field(default=None, gt=0.0, description="Default repetition_penalty (vLLM's).")


class RaySettings(BaseModel):
    """`switchboard serve-ray`: how the Serve application is laid out (docs/scaling.md)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        default=None,
        description="Ray cluster to join (ray://… or HOST:PORT); unset = $RAY_ADDRESS, else a local Ray started here.",
    )
    app_name: str = Field(default="switchboard", description="Serve application name.")
    replicas: int = Field(default=2, ge=1, description="Engine replicas (each loads the base model once).")
    num_cpus: float = Field(default=1, ge=0, description="CPUs Ray reserves per engine replica.")
    num_gpus: float = Field(default=0, ge=0, description="GPUs per engine replica (1 for the vllm engine on a GPU).")
    autoscaling: dict[str, Any] | None = Field(
        default=None,
        description="Serve's autoscaling_config for the engine replicas (min_replicas, max_replicas, "
        "target_ongoing_requests, …); replaces `replicas`.",
    )
    max_ongoing_requests: int | None = Field(
        default=None, ge=1, description="Requests Serve sends one engine replica at once (default: max_batch_size)."
    )
    ingress_replicas: int = Field(
        default=1, ge=1, description="API (ingress) replicas; more than one needs a shared registry (postgresql://…)."
    )
    affinity: bool = Field(
        default=True,
        description="Route each adapter version's requests to replicas that hold it (Serve model multiplexing); "
        "false = Serve's plain load balancing (for comparison).",
    )


class Settings(BaseSettings):
    """Everything `switchboard serve` can be told. Each field is also a CLI flag and a SWITCHBOARD_* variable."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    model: str = Field(
        default="gemma3-270m",
        description="Base model: an embedded name (gemma3-270m, smollm2-135m) or a local Hugging Face model dir.",
    )
    served_model_name: str | None = Field(
        default=None, description="Model id the API reports for the base model (default: the model name)."
    )
    engine: Literal["hf", "vllm"] = Field(default="hf", description="Inference engine.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto",
        description="Weights dtype; auto = bfloat16 on a GPU with bf16; on a CPU with native bf16: bfloat16 on AMX "
        "and where bf16 matmuls measure >= 1.5x fp32's at start, else float32 with fp16-held weights (exact); "
        "float32 on other CPUs (docs/engine.md).",
    )
    quantize: Literal["none", "int8"] = Field(
        default="none",
        description="hf engine, CPU only: int8 base weights (per output channel; inputs per token) with the LoRA "
        "adapters computed beside them, the rest in float32 under dtype auto; serves plain LoRA adapters on the "
        "decoder projections only (docs/engine.md).",
    )
    weights: Literal["auto", "fp16", "dtype"] = Field(
        default="auto",
        description="hf engine on the CPU: how Linear weights are held. In float32: in fp16 with fp32 compute "
        "(fbgemm's FP16 GEMM; half the bytes, 2-4x faster decode); auto = only the weights whose values fp16 holds "
        "exactly (lossless; all of the embedded models' GGUF-derived ones), fp16 = every one (rounding the others). "
        "In bfloat16 with native bf16: auto packs them once for oneDNN (the same values, 1.1-1.3x faster). dtype = "
        "plain weights as the dtype says (docs/engine.md).",
    )
    lm_head: Literal["auto", "shortlist", "full"] = Field(
        default="auto",
        description="hf engine: how serving scores the vocabulary. shortlist = an int8 pass over every token, then "
        "each row's 64 best scored again exactly in fp32 (greedy tokens and top logprobs as full; about half the "
        "lm_head's time), full = the exact product for every token; auto = shortlist for a tied lm_head with a "
        "vocabulary of 32k+ on the CPU, float32 with fp16-held weights or bfloat16 (on an AMX CPU up to 16 rows a "
        "step; docs/engine.md).",
    )
    adapters: dict[str, Path] = Field(
        default_factory=dict, description="Static adapters, NAME -> PEFT dir (CLI: --adapter NAME=DIR)."
    )
    adapter_dir: Path | None = Field(
        default=None,
        description="Serve every PEFT dir inside this dir, named after the dir (default: the bundled adapters/).",
    )
    adapter_roots: list[Path] = Field(
        default_factory=list,
        description="Dirs under which runtime-registered adapters may live (default: the adapter dir).",
    )
    state_dir: Path = Field(default=Path("state"), description="Dir that holds the registry file.")
    registry: str | None = Field(
        default=None,
        description="Where the registry lives: unset = registry.json in the state dir (one process); a "
        "postgresql://USER@HOST/DB URL = one registry shared by every replica (docs/scaling.md).",
    )
    cache_dir: Path = Field(
        default=DEFAULT_CACHE_DIR,
        description="Where the embedded default model is converted to a Hugging Face dir once.",
    )
    admin_key: SecretStr | None = Field(default=None, description="Bearer key for /admin; unset = admin API off.")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Static bearer keys accepted on /v1, unlimited, named static-1, static-2, … in metrics and logs; "
        "with none here and no key created through /admin/keys, /v1 needs no key (docs/tenants.md).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API cross-site, e.g. https://chat.example.com, or * "
        "(none = no CORS headers; CLI: repeated --cors-origin).",
    )
    default_adapter: str | None = Field(
        default=None,
        description="Adapter for requests whose model is the base id and that match no route rule.",
    )
    routes: list[RouteRule] = Field(
        default_factory=list,
        description="Route rules, first match wins (CLI: repeated --route '{adapter: NAME, header: X-Scenario}').",
    )
    adapter_sampling: dict[str, AdapterSampling] = Field(
        default_factory=dict,
        description="Sampling defaults per adapter name (every version), e.g. {after-sales: {repetition_penalty: "
        "1.1}}; a field the request sets wins (CLI: repeated --adapter-sampling NAME='{repetition_penalty: 1.1}').",
    )
    max_resident_adapters: int = Field(
        default=64, ge=1, description="Most adapter versions loaded at once; least recently used are evicted."
    )
    max_lora_rank: int = Field(default=64, ge=1, description="Largest LoRA rank accepted at registration.")
    max_loras: int = Field(
        default=4,
        ge=1,
        description="vllm engine: most distinct adapters in one batch (vLLM's max_loras; the hf engine has no limit).",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm engine: extra vLLM engine arguments, e.g. {quantization: fp8, gpu_memory_utilization: 0.8}.",
    )
    watch_adapter_dir: bool = Field(
        default=False, description="Register PEFT dirs that appear in the adapter dir (and drop removed ones)."
    )
    watch_interval_s: float = Field(default=2.0, gt=0, description="Seconds between scans of a watched adapter dir.")
    feedback_ttl_s: float = Field(
        default=7 * 86400,
        gt=0,
        description="With --registry postgresql://…: seconds a completion id takes feedback on any replica.",
    )
    experiment_user_header: str = Field(
        default="X-User-Id", description="Header whose value keeps a user on one experiment variant (after `user`)."
    )
    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Most sequences decoded in one step.")
    max_queue: int = Field(default=256, ge=1, description="Most requests waiting or running; beyond it: 429.")
    max_model_len: int = Field(
        default=4096,
        ge=16,
        description="Context window in tokens (prompt + completion), capped by the model's.",
    )
    default_max_tokens: int = Field(
        default=512,
        ge=1,
        description="Completion tokens when a request sets no max_tokens (capped by context).",
    )
    max_body_bytes: int = Field(default=2_000_000, ge=1024, description="Largest request body; beyond it: 413.")
    console: bool = Field(
        default=False,
        description="Serve the web console at /console (playground, registry, experiments, traffic); it calls the "
        "same API with the same keys, so it opens nothing the keys do not.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or json: every line one JSON object. Either way one access line per request "
        "(request id, key name, adapter@version, status, tokens, TTFT, latency); never prompts or keys "
        "(docs/observability.md).",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a connection has to send a request's headers, from connecting (or from the first byte "
        "of its next request on a kept-alive connection); slower ones are closed, so stalled clients cannot hold "
        "connections open.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry tracing: the OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (unset: "
        "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT; none of them = tracing off). Needs "
        "pip install 'switchboard[otel]' (docs/observability.md).",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="With tracing on: the share of requests traced when the caller sent no W3C traceparent (a "
        "traceparent's own sampled flag is followed).",
    )
    trace_engine_steps: int = Field(
        default=8,
        ge=0,
        description="With tracing on, hf engine: a span for every prefill and for one decode step in N, in batches "
        "that hold a traced request (0 = no engine spans).",
    )
    drain_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM: seconds /ready answers 503 (and new requests 503) with the listener still open, "
        "so load balancers take the server out, before it closes.",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, after the drain delay: seconds in-flight requests get to finish; streams still "
        "running then end with an error event and [DONE].",
    )
    ray: RaySettings = Field(
        default_factory=RaySettings,
        description="serve-ray: replicas, CPUs/GPUs per replica, autoscaling (CLI: repeated --ray KEY=VALUE).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def base_model_id(self) -> str:
        """The id the API reports for the base model."""
        if self.served_model_name:
            return self.served_model_name
        path = Path(self.model)
        return path.name if path.exists() else self.model

    def effective_adapter_roots(self) -> list[Path]:
        """Where runtime registrations may point: the configured roots, else the adapter dir."""
        if self.adapter_roots:
            return list(self.adapter_roots)
        adapter_dir = self.effective_adapter_dir()
        return [adapter_dir] if adapter_dir is not None else []

    def effective_adapter_dir(self) -> Path | None:
        """The adapter dir to serve: the configured one, else the bundled adapters/ if it exists."""
        if self.adapter_dir is not None:
            return self.adapter_dir
        return BUNDLED_ADAPTER_DIR if BUNDLED_ADAPTER_DIR.is_dir() else None


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional YAML file, the environment and explicit overrides (CLI flags)."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    token = _config_file.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _config_file.reset(token)
