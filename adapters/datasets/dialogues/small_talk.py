"""General small talk: greetings, thanks, "what can you do", ...; phrases/general.yaml."""

from __future__ import annotations

from .marketing import marketing
from .phrasing import Dice, customer, fill, load_phrases
from .presales import presales

PHRASES = load_phrases("general")


def small_talk(dice: Dice, lang: str) -> list[str]:
    """A line of small talk and its answer; after a greeting, sometimes a real question follows."""
    kinds = PHRASES["small_talk"]
    kind = dice.weighted([(name, entry["weight"]) for name, entry in kinds.items()])
    entry = kinds[kind]
    if "pairs" in entry:  # questions each with their own answer
        pair = dice.pick(entry["pairs"][lang])
        turns = [customer(dice, lang, pair["ask"], opener=False), pair["answer"]]
    else:
        question = customer(dice, lang, entry["ask"][lang], opener=False)
        turns = [question, fill(dice, entry["answer"][lang], intro=PHRASES["intro"][lang])]
    if kind == "greet" and dice.chance(0.5):
        dice.follow_up = True
        turns += dice.weighted([(presales, 1), (marketing, 1)])(dice, lang)
        dice.follow_up = False
    return turns
