#!/usr/bin/env python3
"""Build the Lumen & Loom (栖光织物) customer-service datasets described in README.md.

    python adapters/datasets/build_datasets.py          # (re)write every train.jsonl / heldout.jsonl
    python adapters/datasets/build_datasets.py --check  # exit 1 if a file on disk differs from the build
    python adapters/datasets/build_datasets.py --out DIR  # write (or --check) the files under DIR instead

Deterministic: a fixed seed, no set iteration, no clock, so the same code and phrases write byte-identical
files. Dialogues are composed by dialogues/ (one module per scenario) from the catalogue and the policies
(so every figure is the shop's) with the many hand-written phrasings in phrases/*.yaml, plus hand-written
one-off dialogues from the same files. Every final answer is checked with rubric.py before anything is
written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import rubric  # noqa: E402
from dialogues.aftersales import aftersales  # noqa: E402
from dialogues.marketing import marketing  # noqa: E402
from dialogues.phrasing import Dice, load_phrases  # noqa: E402
from dialogues.presales import presales  # noqa: E402
from dialogues.small_talk import small_talk  # noqa: E402

SEED = 20261220
SIZES = {"pre-sales": (200, 40), "after-sales": (200, 40), "marketing": (200, 40), "general": (150, 30)}
ZH_SHARE = 0.575  # share of Chinese dialogues in every file (at least half)
MAKERS: dict[str, Callable[[Dice, str], list[str]]] = {
    "pre-sales": presales,
    "after-sales": aftersales,
    "marketing": marketing,
    "general": small_talk,
}
MAX_TOKENS = 180  # estimated Gemma 3 chat-template tokens; keeps dialogues at about 200 tokens or fewer
OPENERS = (  # customers' greetings, ignored when comparing questions
    "你好", "您好", "在吗", "亲", "请问", "麻烦问一下", "hello", "客服你好", "问下",
    "hi there", "hiya", "hi", "hey", "good morning", "quick question",
)  # fmt: skip
Dialogue = list[dict[str, str]]


def to_messages(turns: list[str]) -> Dialogue:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def rubric_failures(scenario: str, turns: list[str]) -> list[str]:
    """Rubric failures of a dialogue: every answer, scored against the user turns so far joined (as the rubric
    recommends for multi-turn dialogues) and, for the language, against its own question alone."""
    problems = []
    for i in range(1, len(turns), 2):
        result = rubric.score(scenario, "\n".join(turns[0:i:2]), turns[i])
        alone = rubric.score(scenario, turns[i - 1], turns[i])
        if "language" in alone:
            result["language_alone"] = alone["language"]
        if i != len(turns) - 1 and scenario == "pre-sales":
            result.pop("offers_help", None)  # only the last answer must offer more help
        failed = [check for check, passed in result.items() if not passed]
        if failed:
            problems.append(f"turn {i}: {failed}")
    return problems


def approx_tokens(turns: list[str]) -> int:
    """Gemma 3 tokens of a dialogue in its chat template, estimated (fitted on these files: ±15 for 95%)."""
    text = "".join(turns)
    cjk = sum("\u3400" <= ch <= "\u9fff" for ch in text)
    return round(0.99 * cjk + 0.28 * (len(text) - cjk) + 5.3 * len(turns) + 2.5)


def normalised(text: str) -> str:
    """A customer turn without greeting openers, case, spaces and punctuation (to catch near-duplicates)."""
    text = "".join(ch for ch in text.lower() if ch.isalnum())
    stripped = True
    while stripped:
        stripped = False
        for opener in OPENERS:
            opener = opener.replace(" ", "")
            if text.startswith(opener) and len(text) > len(opener):
                text, stripped = text[len(opener) :], True
    return text


def novelty_keys(turns: list[str]) -> tuple[str, str]:
    """(opening question, all customer turns), normalised: each must be new across all files."""
    return normalised(turns[0]), "|".join(normalised(t) for t in turns[0::2])


def build() -> dict[str, dict[str, list[Dialogue]]]:
    seen: set[str] = set()  # normalised opening questions and customer sides of every dialogue so far
    out: dict[str, dict[str, list[Dialogue]]] = {}
    for k, (scenario, (n_train, n_held)) in enumerate(SIZES.items()):
        dice = Dice(SEED + 1000 * k)
        total = n_train + n_held
        want = {"zh": round(total * ZH_SHARE), "en": total - round(total * ZH_SHARE)}
        pools: dict[str, list[list[str]]] = {"zh": [], "en": []}
        for dialogue in load_phrases(scenario)["handwritten"]:
            turns = dialogue["turns"]
            problems = rubric_failures(scenario, turns)
            if problems or approx_tokens(turns) > MAX_TOKENS:
                raise SystemExit(
                    f"hand-written {scenario} dialogue fails the rubric {problems} or is too long: {turns}"
                )
            pools[dialogue["lang"]].append(turns)
            seen.update(novelty_keys(turns))
        for lang in ("zh", "en"):
            tries = 0
            while len(pools[lang]) < want[lang]:
                tries += 1
                if tries > 50000:
                    raise SystemExit(f"{scenario}/{lang}: cannot find enough distinct dialogues")
                made_for = scenario
                if scenario == "general" and dice.chance(0.35):  # the general adapter also sees every scenario
                    made_for = dice.pick(["pre-sales", "after-sales", "marketing"])
                turns = MAKERS[made_for](dice, lang)
                keys = novelty_keys(turns)
                if keys[0] in seen or keys[1] in seen or approx_tokens(turns) > MAX_TOKENS:
                    continue
                problems = rubric_failures(made_for, turns)
                if problems:
                    raise SystemExit(f"{scenario} generated dialogue fails the rubric {problems}: {turns}")
                seen.update(keys)
                pools[lang].append(turns)
        held: list[list[str]] = []
        train: list[list[str]] = []
        for lang in ("zh", "en"):
            pool = pools[lang]
            dice.shuffle(pool)
            n_lang = round(n_held * want[lang] / total)
            held += pool[:n_lang]
            train += pool[n_lang:]
        dice.shuffle(held)
        dice.shuffle(train)
        out[scenario] = {"train": [to_messages(t) for t in train], "heldout": [to_messages(t) for t in held]}
    return out


def render(rows: list[Dialogue]) -> str:
    return "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files on disk differ from a fresh build")
    parser.add_argument("--out", type=Path, default=HERE, help="where the scenario folders are (default: here)")
    args = parser.parse_args()
    data = build()
    stale = []
    for scenario, splits in data.items():
        for split, rows in splits.items():
            path = args.out / scenario / f"{split}.jsonl"
            text = render(rows)
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(args.out)))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            zh = sum(rubric.language(r[0]["content"]) == "zh" for r in rows)
            print(f"{scenario:12} {split:8} {len(rows):4} dialogues ({zh} Chinese, {len(rows) - zh} English)")
    if stale:
        print("out of date (run build_datasets.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
