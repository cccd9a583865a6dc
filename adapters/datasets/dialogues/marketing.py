"""营销 marketing: the promotion, the coupon, the bundle, gifts and brand copy; phrases/marketing.yaml."""

from __future__ import annotations

from collections.abc import Callable

from .phrasing import (
    NAMES,
    Dice,
    bundle_terms,
    capitalised,
    compose,
    coupon_terms,
    customer,
    fill,
    greeting,
    join,
    listing,
    load_phrases,
    promotion,
)
from .shop import ALL, COUNTRIES, COUPON_MINIMUM, COUPON_OFF, PRODUCTS, is_plural, pairs

PHRASES = load_phrases("marketing")
DialogueMaker = Callable[[Dice, str], list[str]]


def whats_on(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["whats_on"]
    question = customer(dice, lang, say["ask"][lang])
    parts = [greeting(dice, lang), promotion(dice, lang), coupon_terms(dice, lang)]
    if dice.chance(0.6):
        parts.append(bundle_terms(dice, lang, also=True))
    if dice.chance(0.3):
        parts.append(say["gift_wrap"][lang])
    return [question, join(lang, parts)]


def coupon_how(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["coupon_how"]
    question = customer(dice, lang, say["ask"][lang])
    return [question, join(lang, [greeting(dice, lang), say["answer"][lang], promotion(dice, lang, short=True)])]


def cart(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["cart"]
    count = dice.pick(say["sizes"])
    items = dice.sample(ALL, count)
    total = sum(p.price for p in items)
    named = listing([p.called(dice, lang) for p in items], lang)
    together = say["together"]["more" if count > 1 else "one"]
    question = customer(dice, lang, say["ask"][lang], items=named, together=together)
    listed = listing([say["item"]["more" if count > 1 else "one"][lang].format(**p.fields(lang)) for p in items], lang)
    fields = {"cart": listed if lang == "zh" else capitalised(listed), "total": total, "after": total - COUPON_OFF}
    fields["in_total"] = say["in_total"] if count > 1 else ""
    fields["s"] = "s" if count == 1 and not is_plural(items[0].en) else ""  # "the robe comes", "the slippers come"
    if total >= COUPON_MINIMUM:
        answer = say["enough"][lang].format(**fields)
    else:
        by_price = sorted(ALL, key=lambda x: x.price)
        add = next(c for c in by_price if c not in items and total + c.price >= COUPON_MINIMUM)
        fields.update(short=COUPON_MINIMUM - total, add_unit=add.unit, add_product=add.name(lang), add_price=add.price)
        fields.update(add_total=total + add.price, add_after=total + add.price - COUPON_OFF)
        answer = say["short"][lang].format(**fields)
    return [question, join(lang, [greeting(dice, lang), answer, promotion(dice, lang, short=True)])]


def stacking(dice: Dice, lang: str) -> list[str]:
    case = PHRASES["stacking"][dice.pick(list(PHRASES["stacking"]))]
    question = customer(dice, lang, case["ask"][lang])
    answer = case["answer"][lang].format(**NAMES[lang])
    return [question, join(lang, [greeting(dice, lang), answer, promotion(dice, lang, short=True)])]


def bundle(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["bundle"]
    question = customer(dice, lang, say["ask"][lang], **NAMES[lang])
    parts = [greeting(dice, lang), bundle_terms(dice, lang), say["colours"][lang], promotion(dice, lang, short=True)]
    return [question, join(lang, parts)]


def deadline(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["deadline"]
    day = dice.pick(say["days"])
    question = customer(dice, lang, say["ask"][lang], day=day, th=say["suffixes"].get(day, "th"))
    parts = [greeting(dice, lang), say["ends"][lang].format(**NAMES[lang])]
    if str(day) in question:  # the question names the day
        parts.append(say["too_late" if day > 20 else "in_time"][lang].format(day=day))
    return [question, join(lang, parts)]


def gift(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["gift"]
    p = dice.pick([PRODUCTS[i] for i in say["products"]])
    someone = dice.pick(pairs(say["recipients"]))
    question = customer(dice, lang, say["ask"][lang], someone=someone[lang])
    fields = {**p.fields(lang), **NAMES[lang], "after": p.price - COUPON_OFF}
    return [question, join(lang, [greeting(dice, lang), compose(dice, lang, say["answer"][lang], **fields)])]


def promotional_copy(dice: Dice, lang: str) -> list[str]:
    """Staff ask for promotional copy in the brand voice."""
    say = PHRASES["copy"]
    p = dice.pick([PRODUCTS[i] for i in say["products"]])
    brief = say["product" if dice.chance(0.3) else "sale"]
    fields = {**p.fields(lang), **NAMES[lang]}
    question = customer(dice, lang, brief["ask"][lang], opener=False, **fields)
    line = fill(dice, brief["lines"][lang], **fields)
    return [question, say["answer"][lang].format(lead=fill(dice, say["leads"][lang]), line=line)]


def brand(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["brand"]
    question = customer(dice, lang, say["ask"][lang])
    meaning = any(word in question.lower() for word in say["meaning_words"])
    parts = [greeting(dice, lang), say["meaning"][lang] if meaning else "", say["about"][lang], promotion(dice, lang)]
    if dice.chance(0.5):
        parts.append(say["favourites"][lang])
    return [question, join(lang, parts)]


def coupon_fails(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["coupon_fails"]
    reason = dice.pick(list(say["reasons"]))
    total = dice.between(150, COUPON_MINIMUM - 1)
    question = customer(dice, lang, say["ask"][lang], total=total)
    words = say["words"][lang]
    reason = next((why for why, word in words.items() if word in question), reason)
    amount = say["amount"][lang].format(total=total, short=COUPON_MINIMUM - total) if words["under"] in question else ""
    start = greeting(dice, lang) or say["when_no_greeting"][lang]
    answer = say["reasons"][reason][lang].format(amount=amount)
    return [question, join(lang, [start, answer, promotion(dice, lang, short=True)])]


def late_coupon(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["late_coupon"]
    shipped = dice.chance(0.5)
    question = customer(dice, lang, say["ask"][lang])
    start = greeting(dice, lang) or say["when_no_greeting"][lang]
    answer = say["answer"]["shipped" if shipped else "not_shipped"][lang]
    return [question, join(lang, [start, answer, promotion(dice, lang, short=True)])]


def bigger_discounts(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["bigger_discounts"]
    question = customer(dice, lang, say["ask"][lang])
    return [question, join(lang, [greeting(dice, lang), say["answer"][lang].format(**NAMES[lang])])]


def international(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["international"]
    country = dice.pick(COUNTRIES)
    question = customer(dice, lang, say["ask"][lang], country=country[lang])
    return [question, join(lang, [greeting(dice, lang), say["answer"][lang].format(**NAMES[lang])])]


DIALOGUES: list[tuple[DialogueMaker, float]] = [
    (whats_on, 4), (coupon_how, 2), (cart, 3), (stacking, 2), (bundle, 2), (deadline, 2), (gift, 2),
    (promotional_copy, 2), (brand, 1), (coupon_fails, 2), (late_coupon, 1), (bigger_discounts, 1), (international, 1),
]  # fmt: skip
FOLLOW_UPS: list[tuple[DialogueMaker, float]] = [(cart, 2), (stacking, 1), (deadline, 1), (bundle, 1)]


def marketing(dice: Dice, lang: str) -> list[str]:
    """A marketing dialogue, sometimes with a second question on another offer."""
    first = dice.weighted(DIALOGUES)
    turns = first(dice, lang)
    if dice.chance(0.25):
        then = dice.weighted([(make, weight) for make, weight in FOLLOW_UPS if make is not first])
        dice.follow_up = True
        turns += then(dice, lang)
        dice.follow_up = False
    return turns
