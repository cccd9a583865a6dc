"""Grammar libraries for structured outputs side by side: xgrammar vs llguidance on the Gemma 3 vocabulary.

Measurement only, no engine integration: what `response_format` json_schema / json_object and tool calls would
cost on this CPU with the model's real tokenizer (262,144 tokens). In one run, each library in turn:
1. setup: its tokenizer object (xgrammar TokenizerInfo + GrammarCompiler; llguidance LLTokenizer), built once
   per server;
2. compile: each of SCHEMAS (nested objects, enums, arrays, required fields; a tool call; json_object) into a
   fresh matcher, caches off, and the first mask after it (llguidance builds its lexer lazily, so the compile
   alone would flatter it): what a request with a new schema pays before its first token;
3. mask: a batch of --batch rows, row i following SCHEMAS[i % n]'s document token by token, then EOS, then
   again from the start (matcher reset), for --steps steps. Each step fills the (batch, vocab / 32) int32
   bitmask, serially in one thread and with the library's parallel batch call (--threads), and checks that every
   row's next token is allowed; then every matcher accepts its token (timed apart);
4. apply: the library's own CPU call that applies that bitmask to (batch, vocab) fp32 logits in place.
Medians of --repeats rounds, the two libraries interleaved (order alternating); ratio = llguidance / xgrammar
(below 1: llguidance is faster). Also the share of (row, step) masks on which the two libraries agree bit for
bit. Never asserts a speed.
Usage: `python loadtests/bench_grammar.py [--quick] [--batch 16] [--steps 192] [--repeats 5] [--threads 2]`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import harness
import torch

STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    """A closed object schema (additionalProperties false), properties in this order."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def enum(*values: Any) -> dict[str, Any]:
    return {"type": "string" if isinstance(values[0], str) else "integer", "enum": list(values)}


ADDRESS = obj(["street", "city", "country"], street=STR, city=STR, country=enum("DE", "FR", "CN", "US"))
LINE = obj(["sku", "qty"], sku=STR, qty={"type": "integer", "minimum": 1}, price=NUM)
SCHEMAS: dict[str, tuple[dict[str, Any], Any]] = {  # name: (schema, a valid document with keys in schema order)
    "order": (  # nested objects, an enum, an array of objects, required and optional fields
        obj(["order_id", "status", "customer", "items"], order_id=STR,
            status=enum("pending", "shipped", "delivered", "returned"),
            customer=obj(["name", "address"], name=STR, email=STR, address=ADDRESS),
            items={"type": "array", "items": LINE, "minItems": 1}, gift=BOOL),
        {"order_id": "A-10293", "status": "shipped",
         "customer": {"name": "Lena Fischer", "email": "lena@example.com",
                      "address": {"street": "Hauptstraße 5", "city": "Köln", "country": "DE"}},
         "items": [{"sku": "KB-87", "qty": 2, "price": 49.9}, {"sku": "MS-12", "qty": 1}], "gift": False},
    ),
    "tool_call": (  # a function call: the name an enum, the arguments an object
        obj(["name", "arguments"], name=enum("get_order_status", "refund_order", "search_products"),
            arguments=obj(["order_id", "reason"], order_id=STR, reason=enum("damaged", "late", "wrong_item"),
                          note=STR)),
        {"name": "refund_order",
         "arguments": {"order_id": "A-10293", "reason": "damaged", "note": "包装破损, the box arrived crushed"}},
    ),
    "ticket": (  # integer enum, arrays of enums and strings, numbers, booleans, optional fields
        obj(["title", "priority", "tags"], title=STR, priority=enum(1, 2, 3),
            tags={"type": "array", "items": enum("billing", "shipping", "account")},
            steps={"type": "array", "items": STR, "maxItems": 5}, sla_hours={"type": "number", "minimum": 0},
            escalate=BOOL),
        {"title": "Parcel stuck in customs", "priority": 2, "tags": ["shipping", "billing"],
         "steps": ["check tracking", "contact carrier", "offer refund"], "sla_hours": 24.5, "escalate": True},
    ),
    "bounded": (  # a length bound and a pattern: xgrammar unrolls maxLength (its compile time grows with it)
        obj(["summary", "codes"], summary={"type": "string", "maxLength": 40},
            codes={"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}, "maxItems": 3}),
        {"summary": "Refund approved for two items", "codes": ["RF-201", "QA-007"]},
    ),
    "json_object": (  # response_format json_object: any object
        {"type": "object"},
        {"answer": "Your order ships tomorrow.", "confidence": 0.8, "links": [{"href": "/orders/A-10293"}, None]},
    ),
}  # fmt: skip


class Library(Protocol):
    """One grammar library behind the calls the benchmark makes; `compile` returns what `matcher` needs."""

    name: str

    def compile(self, schema: dict[str, Any]) -> Any: ...
    def matcher(self, compiled: Any) -> Any: ...
    def fill(self, matchers: Sequence[Any], bitmask: torch.Tensor, parallel: bool) -> None: ...
    def accept(self, matcher: Any, token: int) -> bool: ...
    def reset(self, matcher: Any) -> None: ...
    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None: ...


class XGrammar:
    name = "xgrammar"

    def __init__(self, tokenizer: Any, vocab: int, threads: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
        self.compiler = xgr.GrammarCompiler(info, max_threads=threads, cache_enabled=False)
        self.batch = xgr.BatchGrammarMatcher(max_threads=threads)

    def compile(self, schema: dict[str, Any]) -> Any:
        return self.compiler.compile_json_schema(json.dumps(schema))  # any_whitespace, strict_mode: the defaults

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, matchers: Sequence[Any], bitmask: torch.Tensor, parallel: bool) -> None:
        if parallel:
            self.batch.batch_fill_next_token_bitmask(list(matchers), bitmask)
        else:
            for i, m in enumerate(matchers):
                m.fill_next_token_bitmask(bitmask, i)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        self.xgr.apply_token_bitmask_inplace(logits, bitmask)  # backend "auto": its C++ kernel for CPU tensors


class LLGuidance:
    name = "llguidance"

    def __init__(self, tokenizer: Any, vocab: int, threads: int) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg, self.llt = llguidance, llguidance.torch
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
        self.executor = llguidance.LLExecutor(num_threads=threads)

    def compile(self, schema: dict[str, Any]) -> Any:
        return self.llg.LLMatcher.grammar_from_json_schema(json.dumps(schema))  # a string: the matcher compiles

    def matcher(self, compiled: Any) -> Any:
        matcher = self.llg.LLMatcher(self.tokenizer, compiled)
        if matcher.is_error():
            raise RuntimeError(f"llguidance rejected the grammar: {matcher.get_error()}")
        return matcher

    def fill(self, matchers: Sequence[Any], bitmask: torch.Tensor, parallel: bool) -> None:
        if parallel:
            self.llt.fill_next_token_bitmask_par(self.executor, [(m, i) for i, m in enumerate(matchers)], bitmask)
        else:
            for i, m in enumerate(matchers):
                self.llt.fill_next_token_bitmask(m, bitmask, i)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        self.llt.apply_token_bitmask_inplace(logits, bitmask)  # a torch.compile'd torch kernel


LIBRARIES: dict[str, Callable[[Any, int, int], Library]] = {"xgrammar": XGrammar, "llguidance": LLGuidance}
PACKAGES = {"xgrammar": "xgrammar", "llguidance": "llguidance"}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def allowed(bitmask: torch.Tensor, row: int, token: int) -> bool:
    return bool((int(bitmask[row, token >> 5]) >> (token & 31)) & 1)


def mask_run(
    lib: Library, compiled: list[Any], streams: list[list[int]], special: torch.Tensor, steps: int, parallel: bool
) -> dict[str, Any]:
    """`steps` steps over a batch of fresh matchers (row i: compiled[i], streams[i] in a loop): per-step fill and
    accept times (s), crcs of each row's mask per step, as it is and without `special` (to compare the
    libraries), and the last mask."""
    matchers = [lib.matcher(c) for c in compiled]
    bitmask = torch.zeros(len(matchers), special.shape[0], dtype=torch.int32)
    fill_s, accept_s, crcs, plain_crcs = [], [], [], []
    pos = [0] * len(matchers)
    for _ in range(steps):
        secs, _ = timed(lambda: lib.fill(matchers, bitmask, parallel))
        fill_s.append(secs)
        tokens = [streams[i][pos[i]] for i in range(len(matchers))]
        for i, token in enumerate(tokens):
            if not allowed(bitmask, i, token):
                raise RuntimeError(f"{lib.name}: row {i} step {pos[i]}: token {token} not allowed")
        crcs.append([zlib.crc32(bitmask[i].numpy().tobytes()) for i in range(len(matchers))])
        plain = bitmask & ~special
        plain_crcs.append([zlib.crc32(plain[i].numpy().tobytes()) for i in range(len(matchers))])
        secs, ok = timed(lambda tokens=tokens: all([lib.accept(m, t) for m, t in zip(matchers, tokens, strict=True)]))
        if not ok:
            raise RuntimeError(f"{lib.name}: a matcher refused an allowed token")
        accept_s.append(secs)
        for i in range(len(matchers)):
            pos[i] += 1
            if pos[i] == len(streams[i]):  # EOS accepted: the document is done, start it again
                lib.reset(matchers[i])
                pos[i] = 0
    return {"fill_s": fill_s, "accept_s": accept_s, "crcs": (crcs, plain_crcs), "bitmask": bitmask}


def measure(
    name: str, tokenizer: Any, streams: dict[str, list[int]], special: torch.Tensor, args: Any, repeats: int = 1
) -> tuple[dict[str, Any], Any]:
    """One round of everything for one library (each figure a median of `repeats`); its mask crcs (serial)."""
    vocab = special.shape[0] * 32
    setup = [timed(lambda: LIBRARIES[name](tokenizer, vocab, args.threads)) for _ in range(repeats)]
    lib = setup[-1][1]
    out: dict[str, Any] = {"setup_s": statistics.median(s for s, _ in setup), "compile_s": {}, "first_mask_s": {}}
    bitmask = torch.zeros(1, (vocab + 31) // 32, dtype=torch.int32)
    for schema_name, (schema, _) in SCHEMAS.items():
        compile_s, first_s = [], []
        for _ in range(repeats):
            secs, matcher = timed(lambda schema=schema: lib.matcher(lib.compile(schema)))
            compile_s.append(secs)
            first_s.append(timed(lambda matcher=matcher: lib.fill([matcher], bitmask, False))[0])
        out["compile_s"][schema_name] = statistics.median(compile_s)
        out["first_mask_s"][schema_name] = statistics.median(first_s)
    names = list(SCHEMAS)
    rows = [names[i % len(names)] for i in range(args.batch)]
    compiled = [lib.compile(SCHEMAS[n][0]) for n in rows]
    row_streams = [streams[n] for n in rows]
    crcs: Any = None
    for mode, parallel in (("serial", False), ("parallel", True)):
        per_repeat = []
        for repeat in range(repeats):
            run = mask_run(lib, compiled, row_streams, special, args.steps, parallel)
            per_repeat.append(run)
            if mode == "serial" and repeat == 0:
                crcs = run["crcs"]
        out[f"fill_{mode}_s"] = statistics.median(statistics.mean(r["fill_s"]) for r in per_repeat)
        out[f"fill_{mode}_p99_s"] = statistics.median(harness.pct(r["fill_s"], 99) for r in per_repeat)
        if mode == "serial":
            out["accept_s"] = statistics.median(statistics.mean(r["accept_s"]) for r in per_repeat)
    mask = per_repeat[-1]["bitmask"]  # a real mask: the last step's
    logits = torch.randn(args.batch, vocab)
    for _ in range(3):  # warm-up (llguidance's kernel is torch.compile'd: it traces on the first call)
        lib.apply(logits.clone(), mask)
    apply_s = []
    for _ in range(max(repeats, 20)):
        work = logits.clone()
        apply_s.append(timed(lambda work=work: lib.apply(work, mask))[0])
    check = logits.clone()
    lib.apply(check, mask)
    kept = torch.repeat_interleave(mask, 32, dim=1) >> torch.arange(32, dtype=torch.int32).repeat(mask.shape[1]) & 1
    if not torch.equal(torch.isinf(check), kept == 0):
        raise RuntimeError(f"{name}: apply did not set exactly the masked-out logits to -inf")
    out["apply_s"] = statistics.median(apply_s)
    return out, crcs


def pack(flags: torch.Tensor) -> torch.Tensor:
    """A bool vector as the libraries' bitmask: int32 words, token t at bit t % 32 of word t // 32."""
    words = (flags.view(-1, 32).to(torch.int64) << torch.arange(32)).sum(dim=1)
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds (dicts of figures: per key)."""
    first = rounds[0]
    return {
        k: medians([r[k] for r in rounds]) if isinstance(first[k], dict) else statistics.median(r[k] for r in rounds)
        for k in first
    }


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def isa_flags() -> list[str]:
    """The CPU's avx2 / avx512* / amx* flags (all of them, not only harness.CPU_FLAGS)."""
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return [f for f in line.partition(":")[2].split() if f.startswith(("avx2", "avx512", "amx"))]
    return []


def table(results: dict[str, dict[str, Any]], batch: int) -> list[str]:
    x, g = results["xgrammar"], results["llguidance"]

    def row(what: str, a: float, b: float, unit: str = "ms", scale: float = 1000) -> str:
        return f"| {what} | {b / a:.2f} | {a * scale:.3g} {unit} | {b * scale:.3g} {unit} |"

    lines = ["| measure | ratio llguidance / xgrammar | xgrammar | llguidance |", "|---|---|---|---|"]
    lines.append(row("setup: tokenizer info (+ compiler), once", x["setup_s"], g["setup_s"]))
    for name in SCHEMAS:
        lines.append(row(f"compile `{name}` → matcher", x["compile_s"][name], g["compile_s"][name]))
        lines.append(row(f"first mask `{name}`", x["first_mask_s"][name], g["first_mask_s"][name]))
    for mode in ("serial", "parallel"):
        lines.append(row(f"fill mask, batch {batch}, {mode}, mean per step", x[f"fill_{mode}_s"], g[f"fill_{mode}_s"]))
        lines.append(
            row(f"fill mask, batch {batch}, {mode}, p99 step", x[f"fill_{mode}_p99_s"], g[f"fill_{mode}_p99_s"])
        )
    lines.append(row(f"accept token, batch {batch}, per step", x["accept_s"], g["accept_s"]))
    lines.append(row(f"apply mask to ({batch}, vocab) fp32 logits", x["apply_s"], g["apply_s"]))
    return lines


def main() -> int:
    parser = harness.parser(__doc__, quick="a smoke run: 1 repeat, batch 4, 32 steps")
    args = harness.parse(
        parser,
        quick={"batch": 4, "steps": 32, "repeats": 1, "threads": min(2, os.cpu_count() or 1)},
        full={"batch": 16, "steps": 192, "repeats": 5, "threads": os.cpu_count() or 1},
        batch="rows per mask step",
        steps="mask steps per repeat",
        repeats="repeats per figure (median)",
        threads="threads of the parallel calls and of xgrammar's compiler",
    )
    from switchboard.config import load_settings
    from switchboard.models import resolve_model_dir
    from transformers import AutoConfig, AutoTokenizer

    load_before = os.getloadavg()
    settings = load_settings(None, model=args.model)
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size  # the logits' width
    flags = torch.zeros(vocab, dtype=torch.bool)
    flags[[i for i in tokenizer.added_tokens_decoder if i < vocab]] = True  # <pad>, <unusedN>, <start_of_image>...
    special = pack(flags)
    eos = tokenizer.eos_token_id
    streams = {
        n: [*tokenizer(json.dumps(doc, ensure_ascii=False), add_special_tokens=False)["input_ids"], eos]
        for n, (_, doc) in SCHEMAS.items()
    }
    torch.set_num_threads(args.threads)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in LIBRARIES}
    crcs: dict[str, Any] = {}
    for repeat in range(args.repeats):  # interleaved, the order alternating: load from other work hits both alike
        for name in list(LIBRARIES)[:: 1 if repeat % 2 == 0 else -1]:
            print(f"repeat {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr)
            figures, crcs[name] = measure(name, tokenizer, streams, special, args)
            rounds[name].append(figures)
    results = {name: medians(figures) for name, figures in rounds.items()}
    agree = [agreement(crcs["xgrammar"][k], crcs["llguidance"][k]) for k in (0, 1)]
    model_name, _ = harness.cpu()
    setting = harness.machine(load_before)
    setting["cpu_flags"] = isa_flags()
    versions = {n: version(p) for n, p in PACKAGES.items()} | {"torch": torch.__version__}
    doc_tokens = {n: len(s) for n, s in streams.items()}
    lines = [
        f"CPU: {model_name}; flags: {' '.join(setting['cpu_flags']) or 'none of avx2/avx512/amx'}",
        f"Versions: {', '.join(f'{n} {v}' for n, v in versions.items())}; vocab {vocab} "
        f"({model_dir.name}); threads {args.threads}; document tokens (with EOS) {doc_tokens}",
        "",
        *table(results, args.batch),
        "",
        f"Masks identical bit for bit on {agree[0]:.1%} of the {args.batch * args.steps} (row, step) pairs; "
        f"on {agree[1]:.1%} when the tokenizer's {int(flags.sum())} added tokens (<pad>, <unusedN>, ...) are "
        "left out (xgrammar treats them as text, llguidance never allows them unless the grammar names them); "
        "the rest: xgrammar also allows non-canonical splits of forced text (keys, enum values).",
        *harness.footer(setting, "nothing else (no server)", f"batch {args.batch}, {args.steps} steps"),
    ]
    print("\n".join(lines))
    harness.write_result(
        "grammar", {"setting": setting, "versions": versions, "results": results, "mask_agreement": agree}
    )
    return 0


if __name__ == "__main__":
    harness.run_main(main)
