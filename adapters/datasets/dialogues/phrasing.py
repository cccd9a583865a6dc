"""Seeded draws, the phrase files, and the phrasing every scenario shares: customers' openers and typing
noise, greetings, offers of more help, the promotion, apologies and order numbers.

A phrasing in a phrase file is a list of options (one is drawn) or a plain string (the only one), with
{fields} filled in from the dialogue. Every draw moves the seeded random sequence, so the order of the
draws, and of the options, is what keeps the built datasets byte for byte the same.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rubric
import yaml

PHRASES_DIR = Path(__file__).resolve().parent.parent / "phrases"
CHINESE_NUMERALS = "零一两三四五六七八九十"
MONTHS = {"11": "November", "12": "December"}

Item = TypeVar("Item")
Options = str | list[str]  # a phrasing: one of the options in a list, or the only one
Bilingual = dict[str, str]  # {"zh": ..., "en": ...}


@functools.cache
def load_phrases(name: str) -> dict[str, Any]:
    """phrases/<name>.yaml"""
    text = (PHRASES_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class Dice:
    """The seeded random source of one scenario's dialogues."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.follow_up = False  # True while composing a later part of a conversation: no greetings, no openers

    def pick(self, options: Sequence[Item]) -> Item:
        return options[self.rng.randrange(len(options))]

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def between(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def sample(self, items: Sequence[Item], count: int) -> list[Item]:
        return self.rng.sample(list(items), count)

    def shuffle(self, items: list) -> None:
        self.rng.shuffle(items)

    def weighted(self, table: Sequence[tuple[Item, float]]) -> Item:
        """One item of (item, weight) pairs, in proportion to the weights."""
        rest = self.rng.random() * sum(weight for _, weight in table)
        for item, weight in table:
            rest -= weight
            if rest < 0:
                return item
        return table[-1][0]

    def order_number(self) -> str:
        return f"LL2026{self.rng.randint(0, 9999):04d}"


COMMON = load_phrases("common")
NAMES = {lang: {"promo": rubric.PROMOTION[lang], "bundle": rubric.BUNDLE[lang]} for lang in ("zh", "en")}


def fill(dice: Dice, phrasing: Options, /, **fields: object) -> str:
    """A phrasing: one of its options (a list) or the only one (a string), with its {fields} filled in."""
    template = dice.pick(phrasing) if isinstance(phrasing, list) else phrasing
    return template.format(**fields) if fields else template


def compose(dice: Dice, lang: str, sentences: Sequence[Options], /, **fields: object) -> str:
    """An answer from a list of sentences, each a phrasing (options drawn in order)."""
    return join(lang, [fill(dice, sentence, **fields) for sentence in sentences])


def join(lang: str, parts: Sequence[str]) -> str:
    """Sentences into one text: run together in Chinese, spaced in English; empty parts are dropped."""
    parts = [part for part in parts if part]
    return "".join(parts) if lang == "zh" else " ".join(part.strip() for part in parts)


def sentence(lang: str, clause: str) -> str:
    """A clause as a sentence of its own: '。' after it in Chinese; capitalised with a full stop in English."""
    return f"{clause}。" if lang == "zh" else capitalised(clause) + "."


def capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


def count_words(number: int, lang: str) -> str:
    """'三' for 3 in Chinese (up to 十), digits otherwise."""
    return CHINESE_NUMERALS[number] if lang == "zh" and number <= 10 else str(number)


def date_text(iso: str | None, lang: str) -> str:
    """'12月10日' / 'December 10' for '2026-12-10'; '' for no date."""
    if not iso:
        return ""
    _, month, day = iso.split("-")
    return f"{int(month)}月{int(day)}日" if lang == "zh" else f"{MONTHS[month]} {int(day)}"


def listing(words: Sequence[str], lang: str) -> str:
    """'A、B和C' / 'A, B, and C' ('A and B' for two)."""
    if len(words) == 1:
        return words[0]
    if lang == "zh":
        return "、".join(words[:-1]) + "和" + words[-1]
    return ", ".join(words[:-1]) + (", and " if len(words) > 2 else " and ") + words[-1]


# --------------------------------------------------------------------------------------------------------
# The customer's side
# --------------------------------------------------------------------------------------------------------
def swap_two_letters(dice: Dice, text: str) -> str:
    """A typo: two neighbouring letters swapped in one longer lower-case word ('the' stays)."""
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha() and word.islower()]
    if not candidates:
        return text
    i = dice.pick(candidates)
    word = words[i]
    at = dice.between(1, len(word) - 3)
    words[i] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return " ".join(words)


def english_noise(dice: Dice, text: str, opener: bool) -> str:
    if opener and dice.chance(0.35):
        greeting = dice.pick(COMMON["customer_openers"]["en"])
        if not text.startswith(("I ", "I'm", "I'd", "I've")):
            text = text[0].lower() + text[1:]
        text = greeting + text
    if dice.chance(0.12):
        text = text.lower().rstrip(".?!")
    if dice.chance(0.12):
        text = swap_two_letters(dice, text)
    return text


def chinese_noise(dice: Dice, text: str, opener: bool) -> str:
    if opener and dice.chance(0.35):
        text = dice.pick(COMMON["customer_openers"]["zh"]) + text
    roll = dice.rng.random()
    if roll < 0.22:
        text = text.rstrip("。？！?!，")
    elif roll < 0.3:
        text = text.replace("？", "?")
    elif roll < 0.35 and text.endswith("？"):
        text += "？"
    return text


def customer(dice: Dice, lang: str, phrasing: Options, /, opener: bool = True, **fields: object) -> str:
    """A customer turn: a phrasing, maybe with a greeting in front and some typing noise."""
    text = fill(dice, phrasing, **fields)
    noise = chinese_noise if lang == "zh" else english_noise
    return noise(dice, text, opener and not dice.follow_up)


def name_each(options: list[str], name: Callable[[], str], **fields: object) -> list[str]:
    """The options filled in, each that mentions {item} with a name of its own: name() draws one for each,
    in order, whichever option is then drawn."""
    return [option.format(item=name() if "{item}" in option else "", **fields) for option in options]


# --------------------------------------------------------------------------------------------------------
# The assistant's side
# --------------------------------------------------------------------------------------------------------
def acknowledge(dice: Dice, lang: str) -> str:
    return fill(dice, COMMON["acknowledgements"][lang])


def greeting(dice: Dice, lang: str) -> str:
    """An assistant's greeting (a mere acknowledgement in a later part of a conversation)."""
    if dice.follow_up:
        return acknowledge(dice, lang)
    return fill(dice, COMMON["greetings"][lang])


def opening(dice: Dice, lang: str, follow: bool) -> str:
    """How an answer starts: a greeting, or an acknowledgement when it answers a follow-up question."""
    return acknowledge(dice, lang) if follow else greeting(dice, lang)


def offer_help(dice: Dice, lang: str, answer: str) -> str:
    """The answer with an offer of more help after it."""
    return join(lang, [answer, fill(dice, COMMON["more_help"][lang])])


def promotion(dice: Dice, lang: str, short: bool = False) -> str:
    """A sentence naming the running promotion and its end date."""
    return fill(dice, COMMON["promotion"]["short" if short else "long"][lang], **NAMES[lang])


def coupon_terms(dice: Dice, lang: str) -> str:
    return fill(dice, COMMON["coupon_terms"][lang])


def bundle_terms(dice: Dice, lang: str, also: bool = False) -> str:
    return fill(dice, COMMON["bundle_terms"]["also" if also else "plain"][lang], **NAMES[lang])


def apology(dice: Dice, lang: str, kind: str = "general") -> str:
    return fill(dice, COMMON["apologies"][kind][lang])


def ask_order_number(dice: Dice, lang: str, photo: bool = False) -> str:
    request = fill(dice, COMMON["order_number_requests"]["plain"][lang])
    if photo:  # drawn after the plain request, which it replaces
        request = fill(dice, COMMON["order_number_requests"]["with_photo"][lang])
    return request


def give_order_number(dice: Dice, lang: str, order: str, extra: str = "") -> str:
    """The customer's reply with the order number (sometimes typed in lower case), and maybe a remark."""
    if dice.chance(0.1):
        order = order.lower()
    reply = fill(dice, COMMON["order_number_replies"][lang], order=order)
    return reply + COMMON["remark_after_order_number"][lang].format(remark=extra) if extra else reply
