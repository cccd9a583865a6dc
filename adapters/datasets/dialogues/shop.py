"""The shop: rubric.PRODUCTS (names, prices, sizes) joined with phrases/shop.yaml (colours, stock, care,
what customers call things), and how answers describe a product."""

from __future__ import annotations

from dataclasses import dataclass

import rubric

from .phrasing import Bilingual, Dice, count_words, load_phrases

SHOP = load_phrases("shop")
FREE_SHIPPING_FROM = rubric.POLICY["free_shipping_over"]
COUPON_MINIMUM = rubric.POLICY["coupon_min"]
COUPON_OFF = rubric.POLICY["coupon_off"]
PLURAL_VERBS = {"is": "are", "does": "do", "doesn't": "don't", "has": "have", "goes": "go", "qualifies": "qualify"}


def pairs(mapping: dict[str, str]) -> list[Bilingual]:
    """{中文: English, ...} as [{"zh": 中文, "en": English}, ...]"""
    return [{"zh": zh, "en": en} for zh, en in mapping.items()]


def is_plural(name: str) -> bool:
    return name.endswith("s") and not name.endswith("ss")


@dataclass
class Product:
    id: str
    zh: str
    en: str
    price: int
    sizes: list[str]
    kind: str  # clothing, acc or home
    unit: str  # the Chinese measure word
    relaxed: bool
    colours: list[Bilingual]
    talk: dict[str, list[str]]  # what customers call it, per language
    material: Bilingual
    care: Bilingual
    pitch: Bilingual
    size_text: Bilingual | None = None

    def name(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en

    def called(self, dice: Dice, lang: str) -> str:
        """What a customer calls it (a draw)."""
        return dice.pick(self.talk[lang])

    def verb(self, singular: str) -> str:
        """'comes' for 'the Wool Throw', 'come' for 'the Coral Fleece Slippers'."""
        if not is_plural(self.en):
            return singular
        return PLURAL_VERBS.get(singular, singular[:-1])

    def fields(self, lang: str) -> dict[str, object]:
        """What a phrasing about the product may name, in English agreeing with its (plural) name."""
        plural = is_plural(self.en)
        return {
            "product": self.name(lang),
            "price": self.price,
            "unit": self.unit,
            "pitch": self.pitch[lang],
            "material": self.material[lang],
            "care": self.care[lang],
            "is": self.verb("is"),
            "It_is": "They are" if plural else "It is",
            "It_has": "They have" if plural else "It has",
            "comes": self.verb("comes"),
            "doesnt": self.verb("doesn't"),
            "goes": self.verb("goes"),
            "qualifies": self.verb("qualifies"),
        }


def item_fields(item: str) -> dict[str, object]:
    """What a customer's phrasing may say about the product they name as `item`, agreeing with that name."""
    plural = is_plural(item)
    return {
        "item": item,
        "is": "are" if plural else "is",
        "Is": "Are" if plural else "Is",
        "it": "them" if plural else "it",
        "it_is": "they are" if plural else "it is",
    }


def _product(entry: dict) -> Product:
    details = dict(SHOP["products"][entry["id"]])
    details["colours"] = pairs(details["colours"])
    return Product(entry["id"], entry["zh"], entry["en"], entry["price"], entry["sizes"], **details)


PRODUCTS = {entry["id"]: _product(entry) for entry in rubric.PRODUCTS}
ALL = list(PRODUCTS.values())
CLOTHES = [p for p in ALL if p.kind == "clothing"]
HOME = [p for p in ALL if p.kind == "home"]
STOCK = {(e["product"], e["colour"], e.get("size")): (e["status"], e.get("date")) for e in SHOP["stock"]}
SIZE_CHART = SHOP["size_chart"]
COLOUR_FAMILIES = SHOP["colour_families"]  # English colour -> [中文 family, English family]
ASKED_FAMILIES = pairs(SHOP["asked_families"])
CITIES = SHOP["cities"]
COUNTRIES = pairs(SHOP["countries"])
DESCRIBING = SHOP["describing"]


def stock_status(p: Product, colour_en: str, size: str | None = None) -> tuple[str, str | None]:
    """(in / low / out / preorder, date or None) of a variant."""
    return STOCK.get((p.id, colour_en, size)) or STOCK.get((p.id, colour_en, None)) or ("in", None)


def size_index(height: int, weight: float) -> int:
    """The index of the clothing size for a height and weight: the larger of the two sizes."""
    by_height = next(i for i, row in enumerate(SIZE_CHART) if height <= row["height"])
    by_weight = next(i for i, row in enumerate(SIZE_CHART) if weight <= row["weight"])
    return max(by_height, by_weight)


def colour_names(p: Product, lang: str) -> str:
    """'燕麦色、雾蓝、炭灰' / 'Oat, Mist Blue and Charcoal'"""
    if lang == "zh":
        return "、".join(c["zh"] for c in p.colours)
    names = [c["en"] for c in p.colours]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def size_range(p: Product, lang: str) -> str:
    """'S–XL四个尺码' / 'sizes S–XL', or the one size."""
    if p.size_text:
        return p.size_text[lang]
    if p.kind == "clothing":
        return DESCRIBING["size_range"][lang].format(
            first=p.sizes[0], last=p.sizes[-1], count=count_words(len(p.sizes), lang)
        )
    return DESCRIBING["one_size"][lang].format(size=p.sizes[0])


def options(p: Product, lang: str) -> str:
    """'有S–XL四个尺码，燕麦色、雾蓝、炭灰三色可选' / 'sizes S–XL, in Oat, Mist Blue and Charcoal'"""
    sizes = size_range(p, lang)
    if len(p.colours) == 1:
        return DESCRIBING["options"]["one_colour"][lang].format(sizes=sizes, colour=p.colours[0][lang])
    have = DESCRIBING["have"] if p.kind != "home" else ""
    fields = {
        "have": have,
        "sizes": sizes,
        "colours": colour_names(p, lang),
        "count": count_words(len(p.colours), lang),
    }
    return DESCRIBING["options"]["colours"][lang].format(**fields)
