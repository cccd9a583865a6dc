"""售前 pre-sales: prices, sizes, stock, colours, shipping, care, dimensions, budgets; phrases/pre-sales.yaml.

Each question maker returns (question, answer); `follow` marks a later question in a conversation about
one product (no greeting, no customer opener).
"""

from __future__ import annotations

from collections.abc import Callable

from .phrasing import (
    Dice,
    capitalised,
    count_words,
    customer,
    date_text,
    fill,
    greeting,
    join,
    load_phrases,
    name_each,
    offer_help,
    opening,
    sentence,
)
from .shop import (
    ALL,
    ASKED_FAMILIES,
    CITIES,
    CLOTHES,
    COLOUR_FAMILIES,
    COUNTRIES,
    FREE_SHIPPING_FROM,
    HOME,
    PRODUCTS,
    SIZE_CHART,
    STOCK,
    Product,
    colour_names,
    item_fields,
    options,
    size_index,
    stock_status,
)

PHRASES = load_phrases("pre-sales")
LIST_JOINER = {"zh": "、", "en": " and "}
QuestionMaker = Callable[..., tuple[str, str]]


def stock_note(p: Product, lang: str) -> str:
    """A sentence on the first colour that is not simply in stock ('' when every colour is)."""
    unusual = [c for c in p.colours if stock_status(p, c["en"])[0] != "in"]
    if not unusual:
        return ""
    status, date = stock_status(p, unusual[0]["en"])
    return PHRASES["stock_note"][status][lang].format(colour=unusual[0][lang], date=date_text(date, lang))


def ask_price(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["price"]
    p = p or dice.pick(ALL)
    item = p.called(dice, lang)
    asking = say["follow" if follow else "ask"][lang]
    question = customer(dice, lang, asking, not follow, **item_fields(item), unit=p.unit)
    parts = [
        opening(dice, lang, follow),
        fill(dice, say["answer"][lang], **p.fields(lang), options=options(p, lang)),
        stock_note(p, lang),
    ]
    if dice.chance(0.5):
        parts.append(sentence(lang, p.pitch[lang]))
    return question, join(lang, parts)


def ask_size(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["size"]
    p = p or dice.pick(CLOTHES)
    index = dice.between(0, len(p.sizes) - 1)  # a size, then a height and weight that fit it (or a smaller one)
    row, below = SIZE_CHART[index], SIZE_CHART[index - 1] if index else None
    height = dice.between(below["height"] + 1 if below else 150, row["height"])
    lightest = below["weight"] + 1 if below else 42
    weight = dice.between(42, row["weight"]) if dice.chance(0.5) else dice.between(lightest, row["weight"])
    index = size_index(height, weight)
    size = p.sizes[index]
    item = p.called(dice, lang)
    imperial = lang == "en" and dice.chance(0.3)
    feet, inches = divmod(round(height / 2.54), 12)
    body = {"height": height, "weight": weight, "jin": weight * 2, "feet": feet, "inches": inches}
    body["pounds"] = round(weight * 2.2046)
    if imperial:  # may have a customer opener even as a follow-up
        question = customer(dice, lang, say["imperial"][lang], **item_fields(item), **body)
    else:
        asking = say["follow" if follow else "ask"][lang]
        question = customer(dice, lang, asking, not follow, **item_fields(item), **body)
    fields = {**p.fields(lang), **body, "size": size}
    parts = [opening(dice, lang, follow), fill(dice, say["advice_imperial" if imperial else "advice"][lang], **fields)]
    if p.relaxed and index > 0:
        parts.append(fill(dice, say["relaxed"][lang], **fields, smaller=p.sizes[index - 1]))
    elif not p.relaxed:
        parts.append(say["regular"][lang])
    colour = dice.pick(p.colours)
    status, date = stock_status(p, colour["en"], size)
    if status == "out":
        other = next(c for c in p.colours if stock_status(p, c["en"], size)[0] == "in")
        restock = say["restock" if date else "no_restock"][lang].format(date=date_text(date, lang))
        parts.append(say["sold_out"][lang].format(colour=colour[lang], size=size, restock=restock, other=other[lang]))
    elif dice.chance(0.5):
        parts.append(say["in_stock"][lang].format(colour=colour[lang], size=size))
    return question, join(lang, parts)


def ask_stock(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["stock"]
    if p is None:  # often one with a variant that is not simply in stock
        unusual = ["cardigan", "scarf", "trousers", "duvet", "throw", "rug"]
        p = dice.pick(ALL) if dice.chance(0.6) else PRODUCTS[dice.pick(unusual)]
    colour = dice.pick(p.colours)
    size = dice.pick(p.sizes) if p.kind == "clothing" or p.id == "slippers" else None
    exceptions = [(c, s) for (pid, c, s) in STOCK if pid == p.id]
    if exceptions and dice.chance(0.6):  # ask about the variant that is not simply in stock
        colour_en, exception_size = dice.pick(exceptions)
        colour = next(c for c in p.colours if c["en"] == colour_en)
        size = exception_size or size
    status, date = stock_status(p, colour["en"], size)
    item = p.called(dice, lang)
    size_words = say["size_words"][lang].format(size=size) if size else ""
    asked = colour[lang]
    if lang == "en" and not follow and dice.chance(0.6):
        asked = asked.lower()
    asking = say["follow" if follow else "ask"][lang]
    question = customer(dice, lang, asking, not follow, **item_fields(item), colour=asked, size=size_words)
    fields = {**p.fields(lang), "colour": colour[lang], "size": size_words, "date": date_text(date, lang)}
    fields["variant"] = variant = say["variant"][lang].format(**fields)
    parts = [opening(dice, lang, follow)]
    if status == "in":
        parts.append(fill(dice, say["in"][lang], **fields))
        if dice.chance(0.5):
            parts.append(say["price"][lang].format(**fields))
    elif status == "out":
        others = [c[lang] for c in p.colours if stock_status(p, c["en"], size)[0] == "in"]
        restock = say["restock" if date else "no_restock"][lang].format(**fields)
        are = "is" if len(others) == 1 else "are"
        parts.append(say["out"][lang].format(**fields, restock=restock, others=LIST_JOINER[lang].join(others), are=are))
    else:  # low or preorder
        others = LIST_JOINER[lang].join(c[lang] for c in p.colours if c != colour)
        parts.append(say[status][lang].format(**fields, others=others, Variant=capitalised(variant)))
    return question, join(lang, parts)


def ask_colours(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["colours"]
    p = p or dice.pick([x for x in ALL if len(x.colours) > 1] + [PRODUCTS["duvet"]])
    item = p.called(dice, lang)
    family = dice.pick(ASKED_FAMILIES)
    matching = [c for c in p.colours if COLOUR_FAMILIES[c["en"]][0] == family["zh"]]
    specific = dice.chance(0.5)
    key = ("ask_family" if specific else "ask_all") + ("_follow" if follow else "")
    question = customer(dice, lang, say[key][lang], not follow, **item_fields(item), family=family[lang])
    fields = {**p.fields(lang), "family": family[lang], "colours": colour_names(p, lang)}
    if specific and matching:
        others = LIST_JOINER[lang].join(c[lang] for c in p.colours if c != matching[0])
        answer = say["has_family"][lang] + say["and_others" if others else "only_colour"][lang]
        answer = answer.format(**fields, colour=matching[0][lang], others=others)
    else:
        answer = say["no_family" if specific else "all"][lang].format(**fields, count=count_words(len(p.colours), lang))
    return question, join(lang, [opening(dice, lang, follow), answer, stock_note(p, lang)])


def ask_shipping(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or dice.pick(ALL)
    item = p.called(dice, lang)
    abroad = dice.chance(0.55 if lang == "en" else 0.2)
    country = dice.pick(COUNTRIES)
    say = PHRASES["shipping"]["abroad" if abroad else "home"]
    fields = {**p.fields(lang), "country": country[lang], "city": "" if abroad else dice.pick(CITIES[lang])}
    asked = {**fields, **item_fields(item)}
    question = customer(dice, lang, say["follow" if follow else "ask"][lang], not follow, **asked)
    if abroad:
        last = say["in_stock_follow" if follow else "in_stock"][lang]
    else:
        last = say["free" if p.price >= FREE_SHIPPING_FROM else "paid"][lang]
    parts = [opening(dice, lang, follow), fill(dice, say["answer"][lang], **fields), last.format(**fields)]
    return question, join(lang, parts)


def ask_care(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["care"]
    p = p or dice.pick(ALL)
    item = p.called(dice, lang)
    question = customer(dice, lang, say["follow" if follow else "ask"][lang], not follow, **item_fields(item))
    fields = p.fields(lang)
    parts = [
        opening(dice, lang, follow),
        say["no_shrink"][lang] if say["shrink_word"][lang] in question.lower() else "",
        say["answer"][lang].format(**fields),
    ]
    if dice.chance(0.4):
        parts.append(say["price"][lang].format(**fields))
    return question, join(lang, parts)


def ask_dimensions(dice: Dice, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    say = PHRASES["dimensions"]
    p = p or dice.pick(HOME + [PRODUCTS["scarf"]])
    item = p.called(dice, lang)
    fields = {**p.fields(lang), **item_fields(item)}
    if p.id == "bedding" or (p.id == "duvet" and dice.chance(0.6)):  # never a follow-up: see presales()
        say = say["bed"]
        bed = dice.pick(list(say["covers"]))
        question = customer(dice, lang, say["ask"][lang], not follow, **fields, bed=bed)
        answer = say[p.id][lang].format(**fields, bed=bed, cover=say["covers"][bed])
        parts = [greeting(dice, lang), answer]
        if p.id == "duvet" and dice.chance(0.5):
            parts.append(say["low_stock"][lang])
    elif p.id == "curtain" and dice.chance(0.6):
        say = say["curtain"]
        width = dice.pick(say["widths"])
        panels = max(2, -(-round(width * 1.8 * 10) // 14))  # 1.8 times the window's width, 1.4 m a panel
        window = {"width": f"{width:g}", "panels": panels, "total": panels * p.price}
        question = customer(dice, lang, say["ask"][lang], not follow, **fields, **window)
        parts = [greeting(dice, lang), say["answer"][lang].format(**fields, **window)]
    else:
        say = say["size"]
        question = customer(dice, lang, say["follow" if follow else "ask"][lang], not follow, **fields)
        parts = [opening(dice, lang, follow), say["answer"][lang].format(**fields, size=p.sizes[0])]
    return question, join(lang, parts)


def ask_budget(dice: Dice, lang: str) -> tuple[str, str]:
    say = PHRASES["budget"]
    gift = dice.pick(say["gifts"])
    candidates = [PRODUCTS[i] for i in gift["products"]]
    cheapest = min(c.price for c in candidates)
    budget = dice.pick([b for b in say["budgets"] if b >= cheapest])
    fitting = sorted((c for c in candidates if c.price <= budget), key=lambda c: -c.price)[:3]
    picks = dice.sample(fitting, min(2, len(fitting)))
    question = customer(dice, lang, say["ask"][lang], what=gift[lang], budget=budget)
    parts = [greeting(dice, lang), say["first"][lang].format(**picks[0].fields(lang), budget=budget)]
    if len(picks) > 1:
        parts.append(say["second"][lang].format(**picks[1].fields(lang)))
    return question, join(lang, parts)


def ask_free_shipping(dice: Dice, lang: str) -> tuple[str, str]:
    say = PHRASES["free_shipping"]
    p = dice.pick([PRODUCTS[i] for i in say["products"]])
    number = dice.between(1, 3)
    total = number * p.price
    english = say["products"][p.id]["more" if number > 1 else "one"]
    fields = {**p.fields(lang), "number": number, "count": count_words(number, lang) + p.unit, "total": total}
    phrasings = say["ask"][lang]
    if lang == "zh":
        phrasings = name_each(phrasings, lambda: p.called(dice, lang), count=fields["count"])
    question = customer(dice, lang, phrasings, what=f"{number} {english}")
    parts = [greeting(dice, lang), say["total"][lang].format(**fields)]
    if total >= FREE_SHIPPING_FROM:
        parts.append(say["free"][lang])
    else:
        add = next(c for c in sorted(ALL, key=lambda x: x.price) if total + c.price >= FREE_SHIPPING_FROM)
        extra = {"short": FREE_SHIPPING_FROM - total, "add_unit": add.unit, "add_product": add.name(lang)}
        parts.append(say["short"][lang].format(**extra, add_price=add.price))
    return question, join(lang, parts)


def ask_to_compare(dice: Dice, lang: str) -> tuple[str, str]:
    pair = dice.pick(PHRASES["compare"])
    question = customer(dice, lang, pair["ask"][lang])
    return question, join(lang, [greeting(dice, lang), pair["answer"][lang]])


def ask_about_preorder(dice: Dice, lang: str) -> tuple[str, str]:
    variant = PHRASES["preorder"][dice.pick(list(PHRASES["preorder"]))]
    question = customer(dice, lang, variant["ask"][lang])
    return question, join(lang, [greeting(dice, lang), variant["answer"][lang]])


SINGLE_QUESTIONS: list[tuple[QuestionMaker, float]] = [
    (ask_price, 3), (ask_size, 3), (ask_stock, 3), (ask_colours, 2), (ask_shipping, 3), (ask_care, 2),
    (ask_dimensions, 2), (ask_budget, 2), (ask_free_shipping, 2), (ask_to_compare, 1), (ask_about_preorder, 1),
]  # fmt: skip
FOLLOW_UPS: dict[str, list[QuestionMaker]] = {  # by kind of product: what a conversation about one may ask
    "clothing": [ask_price, ask_size, ask_stock, ask_colours, ask_shipping, ask_care],
    "acc": [ask_price, ask_stock, ask_colours, ask_shipping, ask_care],
    "home": [ask_price, ask_stock, ask_colours, ask_shipping, ask_care, ask_dimensions],
}


def presales(dice: Dice, lang: str) -> list[str]:
    """A pre-sales dialogue: one question, or two or three about one product."""
    if dice.chance(0.3):
        p = dice.pick(ALL)
        makers = FOLLOW_UPS[p.kind]
        if p.id in ("bedding", "duvet", "curtain"):  # their dimension questions stand alone
            makers = [m for m in makers if m is not ask_dimensions]
        steps = dice.sample(makers, dice.pick([2, 2, 3]))
        turns: list[str] = []
        for i, make in enumerate(steps):
            question, answer = make(dice, lang, p, follow=i > 0)
            last = i == len(steps) - 1
            turns += [question, offer_help(dice, lang, answer) if last or dice.chance(0.2) else answer]
        return turns
    question, answer = dice.weighted(SINGLE_QUESTIONS)(dice, lang)
    return [question, offer_help(dice, lang, answer)]
