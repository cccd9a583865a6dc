"""The S-LoRA-style synthetic workload of `loadgen.py`: for each request, when it arrives, which adapter it asks for,
and how many prompt and output tokens it has.

- Adapter popularity follows a power law: request i picks adapter k of the pool with p ∝ 1/(k+1)^alpha (alpha 0 is
  uniform; S-LoRA uses alpha = 1).
- Inter-arrival gaps are Gamma-distributed with mean 1/rate and coefficient of variation cv (shape 1/cv²): cv = 1 is
  a Poisson process, cv > 1 burstier.
- Prompt and output lengths are log-normal, shaped like the LMSYS-Chat trace by default (mean ~85 prompt and ~165
  output tokens, long tails), clipped to [min, max] so a CPU run stays short. Prompts are made of words that the
  Gemma tokenizer encodes as one token each, so a prompt of n tokens after the chat template is n - 9 words.
- Structured outputs: a share `structured` of the requests carry a response format (`loadgen_formats.py`), spread
  evenly over the trace (share 0.5: every other request), the formats taken in turn. Nothing else changes, so a
  trace with share 0, 0.5 or 1 has the same arrivals, adapters, lengths and prompts.

Each of the four draws has its own random stream derived from the seed, so the same seed gives the same trace, and
two workloads that differ only in their adapter pool (N adapters vs one) get the same arrivals, lengths and prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from harness import BASE  # pool entry that sends the request to the bare base model

CHAT_OVERHEAD_TOKENS = 9  # Gemma chat template around one user message: <bos><start_of_turn>user\n…<end_of_turn>\n…
_WORDS = """time person year way day thing man world life hand part child eye woman place work week case point
government company number group problem fact be have do say get make go know take see come think look want give use
find tell ask seem feel try leave call good new first last long great little own other old right big high different
small large next early young important few public bad same able river garden music paper water story market city
house table window road mountain light color sound voice money letter friend family school teacher student question
answer idea plan reason result change history science nature animal tree flower bird fish morning evening night
summer winter spring autumn weather rain snow wind cloud sun moon star ocean island bridge train car plane ship
station street door room kitchen bread coffee tea milk apple orange dinner lunch breakfast game team player ball
field book page word line picture film song dance art language country"""
WORDS = tuple(_WORDS.split())  # one Gemma token each, with or without a leading space
STREAMS = {"arrivals": 0, "lengths": 1, "adapters": 2, "prompts": 3}


@dataclass(frozen=True)
class Lengths:
    """Log-normal token counts: `mean` is the mean before clipping, `sigma` the log-space spread."""

    mean: float
    sigma: float
    min: int
    max: int

    def draw(self, rng: np.random.Generator, n: int) -> list[int]:
        mu = math.log(self.mean) - self.sigma**2 / 2  # so that E[exp(N(mu, sigma))] = mean
        raw = rng.lognormal(mu, self.sigma, size=n)
        return [int(v) for v in np.clip(np.rint(raw), self.min, self.max)]


@dataclass(frozen=True)
class WorkloadSpec:
    pool: tuple[str, ...]  # adapter names (or BASE), most popular first
    alpha: float = 1.0  # power-law exponent of adapter popularity
    rate: float = 1.0  # mean arrivals per second
    cv: float = 1.0  # coefficient of variation of the inter-arrival gaps (1 = Poisson)
    requests: int = 64  # hard cap on the number of requests
    duration_s: float | None = None  # only requests arriving before this offset, if set
    prompt: Lengths = Lengths(85, 1.0, CHAT_OVERHEAD_TOKENS + 1, 256)
    output: Lengths = Lengths(165, 0.8, 4, 128)
    seed: int = 0
    structured: float = 0.0  # share of the requests with a response format, spread evenly
    formats: tuple[str, ...] = ()  # loadgen_formats names, taken in turn by the structured requests


@dataclass(frozen=True)
class TraceRequest:
    index: int
    arrival_s: float  # offset from the start of the run
    adapter: str
    prompt_tokens: int  # intended, after the chat template; the server's usage gives the real count
    output_tokens: int  # max_tokens, with ignore_eos: the exact output length (a structured request may stop sooner)
    prompt: str
    response_format: str | None = None  # a loadgen_formats name; None: free text

    def row(self) -> dict[str, Any]:
        return asdict(self)


def popularity(n: int, alpha: float) -> np.ndarray:
    """P(adapter k) ∝ 1/(k+1)^alpha for k in 0..n-1."""
    weights = 1.0 / np.arange(1, n + 1, dtype=float) ** alpha
    return weights / weights.sum()


def rng_for(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream]])


def arrivals(rng: np.random.Generator, n: int, rate: float, cv: float) -> list[float]:
    """n arrival offsets, the first at 0, with Gamma(1/cv², cv²/rate) gaps (mean 1/rate, CV cv)."""
    if rate <= 0 or cv <= 0:
        raise ValueError(f"rate and cv must be > 0; got rate={rate}, cv={cv}")
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n)
    return [float(t) for t in np.concatenate([[0.0], np.cumsum(gaps[:-1])])] if n else []


def structured_indices(n: int, share: float) -> list[int]:
    """The requests among n that carry a response format: share·n of them, evenly spread (request i iff
    floor((i + 1)·share) > floor(i·share))."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the structured share must be in [0, 1]; got {share}")
    return [i for i in range(n) if math.floor((i + 1) * share + 1e-9) > math.floor(i * share + 1e-9)]


def make_trace(spec: WorkloadSpec) -> list[TraceRequest]:
    if not spec.pool:
        raise ValueError("the adapter pool is empty")
    if spec.structured and not spec.formats:
        raise ValueError(f"a structured share of {spec.structured} needs formats")
    n = spec.requests
    times = arrivals(rng_for(spec.seed, "arrivals"), n, spec.rate, spec.cv)
    lengths_rng = rng_for(spec.seed, "lengths")
    prompt_lens, output_lens = spec.prompt.draw(lengths_rng, n), spec.output.draw(lengths_rng, n)
    picks = rng_for(spec.seed, "adapters").choice(len(spec.pool), size=n, p=popularity(len(spec.pool), spec.alpha))
    words_rng = rng_for(spec.seed, "prompts")
    formats = {i: spec.formats[k % len(spec.formats)] for k, i in enumerate(structured_indices(n, spec.structured))}
    trace = []
    for i in range(n):
        if spec.duration_s is not None and times[i] >= spec.duration_s:
            break
        words = words_rng.choice(len(WORDS), size=max(1, prompt_lens[i] - CHAT_OVERHEAD_TOKENS))
        prompt = " ".join(WORDS[w] for w in words)
        trace.append(TraceRequest(i, round(times[i], 6), spec.pool[picks[i]], prompt_lens[i], output_lens[i], prompt,
                                  formats.get(i)))  # fmt: skip
    return trace


def adapter_names(n: int) -> list[str]:
    """The names of the generated adapters, most popular first."""
    return [f"lg-{k:02d}" for k in range(n)]


def pools_used(pools: Sequence[Sequence[str]]) -> list[str]:
    """The adapters (not BASE) that a set of pools needs, in first-seen order."""
    seen: dict[str, None] = {}
    for pool in pools:
        seen.update((name, None) for name in pool if name != BASE)
    return list(seen)
