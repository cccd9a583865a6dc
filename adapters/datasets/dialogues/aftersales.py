"""售后 after-sales: defects, returns, exchanges, late parcels, refunds, order numbers; phrases/after-sales.yaml.

Most dialogues are complaint → order number → resolution: [question, answer, order number, answer].
"""

from __future__ import annotations

from collections.abc import Callable

import rubric

from .phrasing import (
    Bilingual,
    Dice,
    Options,
    apology,
    ask_order_number,
    capitalised,
    compose,
    count_words,
    customer,
    date_text,
    fill,
    give_order_number,
    greeting,
    join,
    load_phrases,
    name_each,
)
from .shop import ALL, CITIES, CLOTHES, COUNTRIES, PRODUCTS, Product, item_fields, pairs, stock_status

PHRASES = load_phrases("after-sales")
DEFECTS = {pid: pairs(defects) for pid, defects in PHRASES["defects"].items()}  # product -> [{zh, en}]
PAYMENT_METHODS = pairs(PHRASES["payment_methods"])
DialogueMaker = Callable[[Dice, str], list[str]]


def settle(dice: Dice, lang: str, order: str, answer: Options, remark: str = "", /, **fields: object) -> list[str]:
    """The customer's reply with the order number (and a remark), then the answer that settles it."""
    fields["order"] = order
    return [give_order_number(dice, lang, order, remark), compose(dice, lang, answer, **fields)]


def wished_remedy(question: str, lang: str, default: str) -> str:
    """'exchange' or 'refund' when the customer asks for one, else the default."""
    return next((wish for wish, word in PHRASES["wishes"][lang].items() if word in question), default)


def defect(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["defect"]
    p = dice.pick(ALL)
    problem = dice.pick(DEFECTS[p.id])
    item = p.called(dice, lang)
    order = dice.order_number()
    angry = dice.chance(0.35)
    days = dice.between(1, 12)
    remedy = dice.pick(list(say["remedies"]))
    fields = {**p.fields(lang), **item_fields(item), "defect": problem[lang], "order": order}
    question = customer(dice, lang, say["angry" if angry else "ask"][lang], **fields)
    remedy = wished_remedy(question, lang, remedy)
    ask_back = join(lang, [apology(dice, lang), ask_order_number(dice, lang, photo=True)])
    received = fill(dice, say["received"][lang], days=days, days_said=count_words(days, lang))
    fields["remedy"] = say["remedies"][remedy][lang].format(**fields)
    return [question, ask_back, *settle(dice, lang, order, say["resolved"][lang], received, **fields)]


def return_(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["return"]
    p = dice.pick(ALL)
    item = p.called(dice, lang)
    order = dice.order_number()
    days = dice.pick(say["days_since_delivery"])
    reason = dice.pick(say["reasons"][lang])
    fields = {**item_fields(item), "reason": reason, "Reason": capitalised(reason), "order": order, "days": days}
    question = customer(dice, lang, say["ask"][lang], **fields)
    ask_back = join(lang, [fill(dice, say["reply"][lang]), ask_order_number(dice, lang)])
    received = fill(dice, say["received"][lang], days=days, days_said=count_words(days, lang))
    answer = say["in_window" if days <= rubric.POLICY["return_days"] else "too_late"][lang]
    return [question, ask_back, *settle(dice, lang, order, answer, received, **fields, s="s" if days > 1 else "")]


def exchange(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["exchange"]
    p = dice.pick(CLOTHES + [PRODUCTS["slippers"]])
    if p.id == "cardigan" and dice.chance(0.5):  # the sold-out variant
        colour, old, new = next(c for c in p.colours if c["en"] == "Charcoal"), "L", "XL"
    else:
        i = dice.between(0, len(p.sizes) - 2)
        old, new = (p.sizes[i], p.sizes[i + 1]) if dice.chance(0.5) else (p.sizes[i + 1], p.sizes[i])
        colour = dice.pick(p.colours)
    too = "small" if p.sizes.index(new) > p.sizes.index(old) else "big"
    status, date = stock_status(p, colour["en"], new)
    order = dice.order_number()
    item = p.called(dice, lang)
    fields = {**item_fields(item), "old": old, "new": new, "too": say["too"][too][lang], "order": order}
    fields.update(colour=colour[lang], date=date_text(date, lang))
    question = customer(dice, lang, say["ask"][lang], **fields)
    ask_back = join(lang, [fill(dice, say["reply"][lang]), say["rule"][lang], ask_order_number(dice, lang)])
    fields["restock"] = say["restock" if date else "no_restock"][lang].format(**fields)
    answer = say["in_stock" if status == "in" else "sold_out"][lang]
    return [question, ask_back, *settle(dice, lang, order, answer, **fields)]


def late_parcel(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["late"]
    order = dice.order_number()
    abroad = dice.chance(0.4 if lang == "en" else 0.15)
    days = dice.between(8, 14) if abroad else dice.between(3, 6)
    country = dice.pick(COUNTRIES)
    city = dice.pick(CITIES["zh"])  # drawn in either language
    status = dice.pick(list(say["on_the_way"]))
    item = dice.pick(ALL).called(dice, lang) if lang == "zh" and not abroad else ""
    fields = {"order": order, "days": days, "country": country[lang], "city": city, "item": item}
    question = customer(dice, lang, say["ask"]["abroad" if abroad else "home"][lang], **fields)
    ask_back = join(lang, [apology(dice, lang, "late"), ask_order_number(dice, lang)])
    reply = give_order_number(dice, lang, order)
    if abroad:
        return [question, ask_back, reply, compose(dice, lang, say["abroad"][lang], **fields)]
    if lang == "en" and status == "hub":  # an English answer names a hub of its own, drawn only now
        fields["city"] = dice.pick(CITIES["en"])
    return [question, ask_back, reply, compose(dice, lang, say["on_the_way"][status][lang], **fields)]


def on_shelf(p: Product) -> list[Bilingual]:
    """The colours of a product that are in stock (some perhaps low)."""
    return [c for c in p.colours if stock_status(p, c["en"])[0] in ("in", "low")]


def wrong_item(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["wrong_item"]
    p = dice.pick([x for x in ALL if len(on_shelf(x)) > 1])
    want, got = dice.sample(on_shelf(p), 2)
    order = dice.order_number()
    item = p.called(dice, lang)
    missing = p.id == "bedding" and dice.chance(0.5)
    kind = "missing" if missing else "wrong"
    fields = {**p.fields(lang), **item_fields(item), "want": want[lang], "got": got[lang], "order": order}
    question = customer(dice, lang, say["ask"][kind][lang], **fields)
    ask_back = join(lang, [apology(dice, lang), ask_order_number(dice, lang, photo=not missing)])
    return [question, ask_back, *settle(dice, lang, order, say[kind][lang], **fields)]


def refund(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["refund"]
    order = dice.order_number()
    payment = dice.pick(PAYMENT_METHODS)
    state = dice.pick(list(say["states"]))
    question = customer(dice, lang, say["ask"][lang])
    impatient = any(word in question.lower() for word in say["impatient_words"][lang])
    ask_back = join(lang, [fill(dice, say["sorry"][lang]) if impatient else "", ask_order_number(dice, lang)])
    return [question, ask_back, *settle(dice, lang, order, say["states"][state][lang], payment=payment[lang])]


def cancel(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["cancel"]
    order = dice.order_number()
    shipped = dice.chance(0.35)
    question = customer(dice, lang, say["ask"][lang])
    ask_back = join(lang, [fill(dice, say["reply"][lang]), ask_order_number(dice, lang)])
    return [question, ask_back, *settle(dice, lang, order, say["shipped" if shipped else "not_shipped"][lang])]


def change_address(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["address"]
    order = dice.order_number()
    shipped = dice.chance(0.3)
    question = customer(dice, lang, say["ask"][lang])
    ask_back = fill(dice, say["reply"][lang])
    city = dice.pick(CITIES["zh"]) if lang == "zh" else ""  # drawn whichever phrasing is
    new_details = fill(dice, say["new_details"][lang], city=city)
    return [
        question,
        ask_back,
        *settle(dice, lang, order, say["shipped" if shipped else "not_shipped"][lang], new_details),
    ]


def policy_question(dice: Dice, lang: str) -> list[str]:
    """A policy question: answer it, ask for the order number, and (sometimes) act on it once given."""
    say = PHRASES["policy"]
    topic = dice.pick(say["questions"][lang])
    question = customer(dice, lang, topic["ask"])
    tail = fill(dice, say["tail"][lang])
    turns = [question, join(lang, [greeting(dice, lang), topic["answer"], tail])]
    if dice.chance(0.5):
        order = dice.order_number()
        turns += [give_order_number(dice, lang, order, topic["customer"]), topic["done"].format(order=order)]
    return turns


def order_number_first(dice: Dice, lang: str) -> list[str]:
    """The customer gives the order number straight away."""
    say = PHRASES["upfront"]
    p = dice.pick(ALL)
    problem = dice.pick(DEFECTS[p.id])
    order = dice.order_number()
    phrasings = name_each(say["ask"][lang], lambda: p.called(dice, lang), order=order, defect=problem[lang])
    question = customer(dice, lang, phrasings)
    turns = [question, join(lang, [apology(dice, lang), compose(dice, lang, say["answer"][lang], order=order)])]
    if dice.chance(0.4):
        then = customer(dice, lang, say["then_ask"][lang], opener=False)
        remedy = "exchange" if PHRASES["wishes"][lang]["exchange"] in then else "refund"
        turns += [then, say[remedy][lang].format(order=order)]
    return turns


def no_order_number(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["no_order_number"]
    order = dice.order_number()
    question = customer(dice, lang, say["ask"][lang])
    explanation = compose(dice, lang, say["explain"][lang])
    return [question, explanation, *settle(dice, lang, order, say["found"][lang], fill(dice, say["customer"][lang]))]


def bad_order_number(dice: Dice, lang: str) -> list[str]:
    say = PHRASES["bad_order_number"]
    order = dice.order_number()
    bad = order[2:] if dice.chance(0.5) else order[:-1]
    question = customer(dice, lang, say["ask"][lang], bad=bad)
    explanation = say["explain"][lang].format(bad=bad)
    return [question, explanation, *settle(dice, lang, order, say["found"][lang], fill(dice, say["customer"][lang]))]


def vague_complaint(dice: Dice, lang: str) -> list[str]:
    """An upset customer who hasn't said what went wrong yet."""
    say = PHRASES["vague"]
    order = dice.order_number()
    p = dice.pick(ALL)
    problem = dice.pick(DEFECTS[p.id])
    question = customer(dice, lang, say["ask"][lang], opener=False)
    ask_back = join(lang, [apology(dice, lang), say["ask_back"][lang]])
    what = say["customer"][lang].format(item=p.called(dice, lang), defect=problem[lang])
    return [question, ask_back, *settle(dice, lang, order, say["resolved"][lang], what)]


DIALOGUES: list[tuple[DialogueMaker, float]] = [
    (defect, 4), (return_, 4), (exchange, 3), (late_parcel, 3), (wrong_item, 2), (refund, 2), (cancel, 2),
    (change_address, 1), (policy_question, 3), (order_number_first, 2), (no_order_number, 1),
    (bad_order_number, 1), (vague_complaint, 1),
]  # fmt: skip


def aftersales(dice: Dice, lang: str) -> list[str]:
    """An after-sales dialogue, sometimes with the customer's thanks at the end."""
    turns = dice.weighted(DIALOGUES)(dice, lang)
    if len(turns) == 4 and dice.chance(0.2):
        order = rubric.ORDER_RE.search(turns[-1]).group(0).upper()
        say = PHRASES["thanks"]
        turns += [customer(dice, lang, say["ask"][lang], opener=False), fill(dice, say["reply"][lang], order=order)]
    return turns
