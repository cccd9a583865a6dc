#!/usr/bin/env python3
# ruff: noqa: E501  (the dialogue phrasings are long string literals)
"""Build the Lumen & Loom (栖光织物) customer-service datasets described in README.md.

    python adapters/datasets/build_datasets.py          # (re)write every train.jsonl / heldout.jsonl
    python adapters/datasets/build_datasets.py --check  # exit 1 if a file on disk differs from the build

Deterministic: a fixed seed, no set iteration, no clock, so the same code writes byte-identical files.
Dialogues are composed from the catalogue and the policies (so every figure is the shop's) with many
hand-written phrasings, plus hand-written one-off dialogues. Every final answer is checked with
rubric.py before anything is written.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import rubric  # noqa: E402

SEED = 20261220
SIZES = {"pre-sales": (200, 40), "after-sales": (200, 40), "marketing": (200, 40), "general": (150, 30)}
ZH_SHARE = 0.575  # share of Chinese dialogues in every file (at least half)

# --------------------------------------------------------------------------------------------------------
# Catalogue: rubric.PRODUCTS (names, price, sizes) + what the conversations need (colours, care, stock).
# --------------------------------------------------------------------------------------------------------
DETAILS = {
    "cardigan": dict(
        kind="clothing", unit="件", relaxed=True,
        colours=[("燕麦色", "Oat"), ("雾蓝", "Mist Blue"), ("炭灰", "Charcoal")],
        talk_zh=["云朵开衫", "羊毛开衫", "那件开衫", "云朵羊毛开衫"],
        talk_en=["cloud cardigan", "wool cardigan", "Cloud Wool Cardigan", "cardigan"],
        material=("70%美利奴羊毛混纺", "a 70% merino wool blend"),
        care=("建议30°C以下手洗或干洗，平铺晾干", "hand wash below 30°C or dry-clean, then dry it flat"),
        point=("软糯不扎，版型偏宽松，里面加件衬衫正好", "it is soft, not itchy, and roomy enough to layer over a shirt"),
    ),
    "shirt": dict(
        kind="clothing", unit="件", relaxed=False,
        colours=[("白色", "White"), ("鼠尾草绿", "Sage")],
        talk_zh=["亚麻衬衫", "晨光亚麻衬衫", "那件亚麻衬衣"],
        talk_en=["linen shirt", "Morning Linen Shirt", "linen button-up"],
        material=("100%亚麻", "100% linen"),
        care=("可以机洗，30°C轻柔模式，不建议烘干", "machine wash at 30°C on gentle and skip the tumble dryer"),
        point=("透气，越洗越软", "it breathes well and gets softer with every wash"),
    ),
    "scarf": dict(
        kind="acc", unit="条", relaxed=False,
        colours=[("驼色", "Camel"), ("酒红", "Burgundy"), ("燕麦色", "Oat")],
        talk_zh=["羊绒围巾", "围巾", "那条羊绒围巾"],
        talk_en=["cashmere scarf", "scarf", "Cashmere Scarf"],
        material=("100%山羊绒", "100% cashmere"),
        care=("建议干洗，或冷水手洗后平铺晾干", "dry-clean it, or hand wash in cold water and dry it flat"),
        point=("180×30 cm，轻薄又保暖，男女都适合", "at 180×30 cm it is light, warm and suits anyone"),
    ),
    "lounge": dict(
        kind="clothing", unit="套", relaxed=True,
        colours=[("奶白", "Cream"), ("雾粉", "Dusty Pink")],
        talk_zh=["家居服", "抓绒家居服", "家居服套装"],
        talk_en=["lounge set", "fleece lounge set", "loungewear set"],
        material=("双面抓绒（聚酯纤维）", "double-sided polyester fleece"),
        care=("可以机洗，30°C反面洗", "machine wash it at 30°C, inside out"),
        point=("上衣加长裤一套，暖和又好打理", "it is a top and trousers, warm and easy to care for"),
    ),
    "beanie": dict(
        kind="acc", unit="顶", relaxed=False,
        colours=[("黑色", "Black"), ("燕麦色", "Oat"), ("森林绿", "Forest Green")],
        talk_zh=["毛线帽", "针织帽", "粗针毛线帽"],
        talk_en=["beanie", "knit hat", "chunky beanie"],
        material=("50%羊毛混纺", "a 50% wool blend"),
        care=("建议手洗，平铺晾干", "hand wash and dry flat"),
        point=("均码，适合头围54–60 cm", "it is one size and fits heads of 54–60 cm"),
    ),
    "trousers": dict(
        kind="clothing", unit="条", relaxed=True,
        colours=[("卡其色", "Khaki"), ("黑色", "Black")],
        talk_zh=["阔腿裤", "棉麻阔腿裤", "那条阔腿裤"],
        talk_en=["wide-leg trousers", "linen trousers", "wide leg pants"],
        material=("55%棉、45%亚麻", "55% cotton and 45% linen"),
        care=("可以机洗，30°C", "machine wash at 30°C"),
        point=("高腰阔腿，后腰有松紧", "they are high-waisted with an elastic back waist"),
    ),
    "robe": dict(
        kind="clothing", unit="件", relaxed=True,
        colours=[("白色", "White"), ("浅灰", "Light Grey")],
        talk_zh=["浴袍", "长绒棉浴袍", "睡袍"],
        talk_en=["robe", "bathrobe", "cotton robe"],
        material=("100%长绒棉毛圈", "100% long-staple cotton terry"),
        care=("可以机洗，40°C", "machine wash at 40°C"),
        point=("吸水快，有腰带和两个口袋", "it dries you fast and has a belt and two pockets"),
    ),
    "bedding": dict(
        kind="home", unit="套", relaxed=False,
        colours=[("雾蓝", "Mist Blue"), ("燕麦色", "Oat"), ("浅灰", "Light Grey")],
        talk_zh=["四件套", "水洗棉四件套", "床上四件套"],
        talk_en=["bedding set", "duvet cover set", "washed cotton bedding"],
        material=("100%水洗棉", "100% washed cotton"),
        care=("可以机洗，40°C，第一次请单独洗", "machine wash at 40°C, separately the first time"),
        point=("含被套、床单和两个枕套，1.5 m床款被套200×230 cm，1.8 m床款220×240 cm",
               "it has a duvet cover, a flat sheet and two pillowcases; the cover is 200×230 cm for a 1.5 m bed "
               "and 220×240 cm for a 1.8 m bed"),
    ),
    "duvet": dict(
        kind="home", unit="条", relaxed=False,
        colours=[("白色", "White")],
        talk_zh=["羽绒被", "鹅绒被", "白鹅绒羽绒被"],
        talk_en=["duvet", "down duvet", "goose down comforter"],
        material=("90%白鹅绒填充，全棉面料", "90% white goose down in a cotton shell"),
        care=("不建议水洗，可以送专业清洗，平时多通风晾晒", "it is not for home washing: have it cleaned professionally and air it often"),
        point=("200×230 cm，1.5 m和1.8 m的床都适用", "at 200×230 cm it fits both 1.5 m and 1.8 m beds"),
    ),
    "throw": dict(
        kind="home", unit="条", relaxed=False,
        colours=[("燕麦色", "Oat"), ("焦糖色", "Caramel"), ("格纹", "Check")],
        talk_zh=["羊毛盖毯", "盖毯", "羊毛毯"],
        talk_en=["wool throw", "throw blanket", "wool blanket"],
        material=("100%羊毛", "100% wool"),
        care=("建议干洗，或冷水手洗后平铺晾干", "dry-clean it, or hand wash cold and dry it flat"),
        point=("130×170 cm，沙发上午睡盖刚好", "at 130×170 cm it is just right for a nap on the sofa"),
    ),
    "cushion": dict(
        kind="home", unit="个", relaxed=False,
        colours=[("白色", "White"), ("鼠尾草绿", "Sage"), ("陶土色", "Terracotta"), ("雾蓝", "Mist Blue")],
        talk_zh=["抱枕套", "亚麻抱枕套", "靠垫套"],
        talk_en=["cushion cover", "linen cushion cover", "pillow cover"],
        material=("100%亚麻", "100% linen"),
        care=("可以机洗，30°C", "machine wash at 30°C"),
        point=("45×45 cm，隐形拉链，不含枕芯", "it is 45×45 cm with a hidden zip; the insert is not included"),
    ),
    "towel": dict(
        kind="home", unit="条", relaxed=False,
        colours=[("白色", "White"), ("浅灰", "Light Grey"), ("雾蓝", "Mist Blue")],
        talk_zh=["浴巾", "纯棉浴巾", "大浴巾"],
        talk_en=["bath towel", "towel", "cotton bath towel"],
        material=("100%长绒棉", "100% long-staple cotton"),
        care=("可以机洗，40°C，少用柔顺剂", "machine wash at 40°C and go easy on fabric softener"),
        point=("70×140 cm，厚实吸水", "it is 70×140 cm, thick and very absorbent"),
    ),
    "curtain": dict(
        kind="home", unit="片", relaxed=False,
        colours=[("浅灰", "Light Grey"), ("米白", "Ivory")],
        talk_zh=["窗帘", "遮光窗帘"],
        talk_en=["blackout curtain", "curtain panel", "blackout curtains"],
        material=("涤棉混纺，遮光率约95%", "a poly-cotton blend that blocks about 95% of light"),
        care=("可以机洗，30°C轻柔模式", "machine wash at 30°C on gentle"),
        point=("单片140×250 cm，按片计价，配挂钩", "one panel is 140×250 cm, priced per panel, hooks included"),
    ),
    "rug": dict(
        kind="home", unit="块", relaxed=False,
        colours=[("米白", "Ivory"), ("灰色", "Grey")],
        talk_zh=["地毯", "编织地毯", "手工地毯"],
        talk_en=["rug", "woven rug", "hand-woven rug"],
        material=("手工编织棉线", "hand-woven cotton"),
        care=("建议局部清洁，不能机洗", "spot-clean only, as it isn't machine washable"),
        point=("120×180 cm，放床边或沙发前都合适", "at 120×180 cm it suits a bedside or the space in front of a sofa"),
    ),
    "flannel": dict(
        kind="home", unit="条", relaxed=False,
        colours=[("雾粉", "Dusty Pink"), ("浅灰", "Light Grey")],
        talk_zh=["法兰绒毯", "法兰绒毛毯", "法兰绒盖毯"],
        talk_en=["flannel blanket", "flannel throw", "fleece blanket"],
        material=("法兰绒（聚酯纤维）", "polyester flannel"),
        care=("可以直接机洗，30°C", "machine wash at 30°C"),
        point=("150×200 cm，轻软，可以机洗", "at 150×200 cm it is light, soft and machine washable"),
    ),
    "slippers": dict(
        kind="acc", unit="双", relaxed=False,
        colours=[("浅灰", "Light Grey"), ("雾粉", "Dusty Pink")],
        talk_zh=["拖鞋", "珊瑚绒拖鞋", "毛绒拖鞋"],
        talk_en=["slippers", "fleece slippers", "fluffy slippers"],
        material=("珊瑚绒鞋面，防滑底", "coral fleece uppers and a non-slip sole"),
        care=("建议手洗，不要机洗，自然晾干", "hand wash them (not in the machine) and let them air-dry"),
        point=("有36–37、38–39、40–41、42–43四个尺码", "they come in sizes 36–37, 38–39, 40–41 and 42–43"),
    ),
}  # fmt: skip

# One selling line per product, without sizes (the answers state those separately)
PITCH = {
    "cardigan": ("软糯不扎，版型偏宽松，秋冬叠穿都好看", "it is soft, not itchy and roomy enough to layer"),
    "shirt": ("透气，越洗越软", "it breathes well and gets softer with every wash"),
    "scarf": ("轻薄又保暖，男女都适合", "it is light but warm and suits anyone"),
    "lounge": ("上衣加长裤一套，暖和又好打理", "it is a top and trousers, warm and easy to care for"),
    "beanie": ("粗针织法，厚实保暖", "the chunky knit keeps you properly warm"),
    "trousers": ("高腰阔腿，后腰有松紧", "they are high-waisted with an elastic back waist"),
    "robe": ("吸水快，有腰带和两个口袋", "it dries you fast and has a belt and two pockets"),
    "bedding": ("水洗工艺，第一晚就很柔软", "it is pre-washed, so it feels soft from the first night"),
    "duvet": ("蓬松轻盈，冬天盖很暖", "it is light, fluffy and very warm in winter"),
    "throw": ("厚实有分量，沙发上午睡盖刚好", "it is cosy and just right for a nap on the sofa"),
    "cushion": ("亚麻质感，换个颜色客厅就不一样", "a new colour changes the whole sofa"),
    "towel": ("厚实吸水", "it is thick and very absorbent"),
    "curtain": ("遮光率约95%，配挂钩", "it blocks about 95% of light and comes with hooks"),
    "rug": ("手工编织，放床边或沙发前都合适", "it is hand-woven and suits a bedside or the space in front of a sofa"),
    "flannel": ("轻软，可以直接机洗", "it is light, soft and machine washable"),
    "slippers": ("防滑底，在家穿很暖和", "they have a non-slip sole and keep your feet warm"),
}
# Stock exceptions; every other variant is in stock. (product, colour, size or None): (status, date)
STOCK = {
    ("cardigan", "Charcoal", "XL"): ("out", "2026-12-10"),
    ("scarf", "Burgundy", None): ("low", None),
    ("trousers", "Black", "S"): ("out", None),
    ("duvet", "White", None): ("low", None),
    ("throw", "Caramel", None): ("out", "2026-12-08"),
    ("rug", "Grey", None): ("preorder", "2026-12-15"),
}
# Clothing sizes: upper bounds of height (cm) and weight (kg)
SIZE_CHART = [("S", 160, 52), ("M", 167, 60), ("L", 174, 70), ("XL", 180, 80), ("XXL", 186, 90)]
COLOUR_FAMILY = {  # colour -> (zh family word, en family word)
    "Oat": ("米色", "beige"), "Mist Blue": ("蓝色", "blue"), "Charcoal": ("灰色", "grey"), "White": ("白色", "white"),
    "Sage": ("绿色", "green"), "Camel": ("棕色", "brown"), "Burgundy": ("红色", "red"), "Cream": ("白色", "white"),
    "Dusty Pink": ("粉色", "pink"), "Black": ("黑色", "black"), "Forest Green": ("绿色", "green"),
    "Khaki": ("米色", "beige"), "Light Grey": ("灰色", "grey"), "Caramel": ("棕色", "brown"), "Check": ("格子", "check"),
    "Terracotta": ("橙色", "orange"), "Ivory": ("白色", "white"), "Grey": ("灰色", "grey"),
}  # fmt: skip
FAMILIES = [("蓝色", "blue"), ("灰色", "grey"), ("白色", "white"), ("粉色", "pink"), ("绿色", "green"),
            ("黑色", "black"), ("红色", "red"), ("米色", "beige"), ("黄色", "yellow"), ("紫色", "purple")]  # fmt: skip


@dataclass
class Product:
    id: str
    zh: str
    en: str
    price: int
    sizes: list
    kind: str
    unit: str
    relaxed: bool
    colours: list
    talk_zh: list
    talk_en: list
    material: tuple
    care: tuple
    point: tuple
    pitch: tuple = ("", "")


P = {
    p["id"]: Product(p["id"], p["zh"], p["en"], p["price"], p["sizes"], **DETAILS[p["id"]], pitch=PITCH[p["id"]])
    for p in rubric.PRODUCTS
}
ALL = list(P.values())
CLOTHES = [p for p in ALL if p.kind == "clothing"]
HOME = [p for p in ALL if p.kind == "home"]
CHEAP = [P[i] for i in ("cushion", "towel", "flannel", "beanie", "slippers")]
POL = rubric.POLICY
PROMO_ZH, PROMO_EN = rubric.PROMOTION["zh"], rubric.PROMOTION["en"]
BUNDLE_ZH, BUNDLE_EN = rubric.BUNDLE["zh"], rubric.BUNDLE["en"]

ZH_CITIES = ["上海", "北京", "成都", "广州", "深圳", "杭州", "西安", "武汉", "南京", "长沙", "哈尔滨", "昆明", "厦门", "重庆",
             "苏州", "天津", "青岛", "沈阳", "郑州", "大连"]  # fmt: skip
EN_CITIES = ["Shanghai", "Beijing", "Shenzhen", "Chengdu", "Guangzhou", "Hangzhou", "Suzhou", "Xiamen"]
COUNTRIES = [("德国", "Germany"), ("加拿大", "Canada"), ("新加坡", "Singapore"), ("澳大利亚", "Australia"),
             ("英国", "the UK"), ("法国", "France"), ("日本", "Japan"), ("美国", "the US"), ("新西兰", "New Zealand"),
             ("荷兰", "the Netherlands"), ("马来西亚", "Malaysia"), ("意大利", "Italy")]  # fmt: skip
MONTHS = {"12": "December", "11": "November"}


def zh_date(iso: str) -> str:
    _, m, d = iso.split("-")
    return f"{int(m)}月{int(d)}日"


def en_date(iso: str) -> str:
    _, m, d = iso.split("-")
    return f"{MONTHS[m]} {int(d)}"


def stock(p: Product, colour_en: str, size: str | None = None) -> tuple[str, str | None]:
    return STOCK.get((p.id, colour_en, size)) or STOCK.get((p.id, colour_en, None)) or ("in", None)


def size_for(h: int, w: float) -> int:
    hi = next(i for i, (_, hh, _) in enumerate(SIZE_CHART) if h <= hh)
    wi = next(i for i, (_, _, ww) in enumerate(SIZE_CHART) if w <= ww)
    return max(hi, wi)


ZH_NUM = ["零", "一", "两", "三", "四", "五", "六", "七", "八", "九", "十"]


# --------------------------------------------------------------------------------------------------------
# Randomness and phrasing helpers
# --------------------------------------------------------------------------------------------------------
class G:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.follow = False  # True while composing a later part of a conversation: no greetings, no openers

    def c(self, seq):
        return seq[self.r.randrange(len(seq))]

    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def n(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def sample(self, seq, k: int) -> list:
        return self.r.sample(list(seq), k)

    def order(self) -> str:
        return f"LL2026{self.r.randint(0, 9999):04d}"


def typo(g: G, s: str) -> str:
    words = s.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha() and w.islower()]
    if not idx:
        return s
    i = g.c(idx)
    w = words[i]
    j = g.n(1, len(w) - 3)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def en_user(g: G, s: str, opener: bool = True) -> str:
    if opener and g.p(0.35):
        o = g.c(["Hi, ", "Hello, ", "Hey, ", "Hi there, ", "Hiya, ", "Good morning, ", "Quick question: "])
        if not s.startswith(("I ", "I'm", "I'd", "I've")):
            s = s[0].lower() + s[1:]
        s = o + s
    if g.p(0.12):
        s = s.lower().rstrip(".?!")
    if g.p(0.12):
        s = typo(g, s)
    return s


def zh_user(g: G, s: str, opener: bool = True) -> str:
    if opener and g.p(0.35):
        s = (
            g.c(
                [
                    "你好，",
                    "您好，",
                    "在吗？",
                    "在吗，",
                    "亲，",
                    "请问",
                    "麻烦问一下，",
                    "hello，",
                    "客服你好，",
                    "问下，",
                ]
            )
            + s
        )
    roll = g.r.random()
    if roll < 0.22:
        s = s.rstrip("。？！?!，")
    elif roll < 0.3:
        s = s.replace("？", "?")
    elif roll < 0.35 and s.endswith("？"):
        s += "？"
    return s


def u(g: G, lang: str, zh: str | list, en: str | list, opener: bool = True) -> str:
    """A customer turn: pick a phrasing, add an opener / typing noise."""
    opener = opener and not g.follow
    if lang == "zh":
        return zh_user(g, g.c(zh) if isinstance(zh, list) else zh, opener)
    return en_user(g, g.c(en) if isinstance(en, list) else en, opener)


def j(lang: str, parts: list[str]) -> str:
    parts = [x for x in parts if x]
    return "".join(parts) if lang == "zh" else " ".join(p.strip() for p in parts)


def hi(g: G, lang: str) -> str:
    if g.follow:
        return ack(g, lang)
    if lang == "zh":
        return g.c(["您好！", "您好，", "", "", "您好呀，"])
    return g.c(["Hi! ", "Hello! ", "Hi there! ", "", ""])


def ack(g: G, lang: str) -> str:
    if lang == "zh":
        return g.c(["好的，", "明白，", "", "", "收到，"])
    return g.c(["", "", "Good question. ", "Got it. ", "Let me check. "])


def help_(g: G, lang: str) -> str:
    if lang == "zh":
        return g.c(["还有什么可以帮您的吗？", "还有其他想了解的，随时问我。", "有其他问题也可以继续问我哦。",
                    "还需要我帮您看看别的吗？", "还有什么想了解的吗？", "需要的话我也可以帮您推荐搭配。"])  # fmt: skip
    return g.c(["Anything else I can help with?", "Let me know if you have any other questions.",
                "Happy to help with anything else.", "Is there anything else you'd like to know?",
                "Feel free to ask if you need anything else.", "Just ask if you'd like a matching recommendation."])  # fmt: skip


def talk(g: G, p: Product, lang: str) -> str:
    return g.c(p.talk_zh) if lang == "zh" else g.c(p.talk_en)


def plural(name: str) -> bool:
    return name.endswith("s") and not name.endswith("ss")


def name(p: Product, lang: str) -> str:
    return p.zh if lang == "zh" else p.en


def the(p: Product) -> str:
    return f"the {p.en}"


def be(p: Product) -> str:
    return "are" if plural(p.en) else "is"


def verb(p: Product, singular: str) -> str:
    """'comes' for 'the Wool Throw', 'come' for 'the Coral Fleece Slippers'."""
    if not plural(p.en):
        return singular
    return {"does": "do", "doesn't": "don't", "has": "have", "goes": "go", "qualifies": "qualify"}.get(
        singular, singular[:-1]
    )


def cols(p: Product, lang: str) -> str:
    if lang == "zh":
        return "、".join(c[0] for c in p.colours)
    names = [c[1] for c in p.colours]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def sizes_text(p: Product, lang: str) -> str:
    if p.kind == "clothing":
        rng = f"{p.sizes[0]}–{p.sizes[-1]}"
        return f"{rng}{ZH_NUM[len(p.sizes)]}个尺码" if lang == "zh" else f"sizes {rng}"
    if p.id == "slippers":
        return "36–37到42–43四个尺码" if lang == "zh" else "sizes 36–37 to 42–43"
    if p.id == "beanie":
        return "均码（头围54–60 cm）" if lang == "zh" else "one size (head 54–60 cm)"
    if p.id == "bedding":
        return "1.5 m床和1.8 m床两种规格" if lang == "zh" else "1.5 m and 1.8 m bed sizes"
    return f"尺寸{p.sizes[0]}" if lang == "zh" else p.sizes[0]


def options(p: Product, lang: str) -> str:
    """'有S–XL四个尺码，燕麦色、雾蓝、炭灰可选' / 'in sizes S–XL and in Oat, Mist Blue and Charcoal'"""
    if lang == "zh":
        if len(p.colours) == 1:
            return f"{sizes_text(p, lang)}，{p.colours[0][0]}一款"
        return f"{'有' if p.kind != 'home' else ''}{sizes_text(p, lang)}，{cols(p, lang)}{ZH_NUM[len(p.colours)]}色可选"
    if len(p.colours) == 1:
        return f"{sizes_text(p, lang)}, in {p.colours[0][1]} only"
    return f"{sizes_text(p, lang)}, in {cols(p, lang)}"


def promo(g: G, lang: str, short: bool = False) -> str:
    """A sentence naming the running promotion and its end date."""
    if lang == "zh":
        if short:
            return g.c([f"{PROMO_ZH}到12月20日截止哦。", f"{PROMO_ZH}12月20日结束，别错过。",
                        f"记得在{PROMO_ZH}结束前（12月20日）下单。", f"{PROMO_ZH}只到12月20日，抓紧哦。"])  # fmt: skip
        return g.c([f"现在正值{PROMO_ZH}，活动到12月20日截止。", f"我们的{PROMO_ZH}正在进行中，12月20日23:59结束。",
                    f"{PROMO_ZH}进行中（截止到2026年12月20日）。", f"眼下是{PROMO_ZH}，活动持续到12月20日。"])  # fmt: skip
    if short:
        return g.c([f"The {PROMO_EN} ends on December 20.", f"Just remember the {PROMO_EN} ends December 20.",
                    f"The {PROMO_EN} runs until 20 December, so there's still time.",
                    f"Offer valid until Dec 20, the last day of the {PROMO_EN}."])  # fmt: skip
    return g.c([f"Our {PROMO_EN} is on until December 20.", f"The {PROMO_EN} is running now and ends on 20 December.",
                f"Right now we're in the {PROMO_EN}, which runs until December 20 (23:59 Beijing time).",
                f"Our {PROMO_EN} is on through 2026-12-20."])  # fmt: skip


def coupon_rule(g: G, lang: str) -> str:
    if lang == "zh":
        return g.c(["结算时输入券码WARM30，订单满¥299立减¥30，每单限用一张，不能和其他优惠券叠加。",
                    "券码WARM30：满299减30，结算页填写即可，每单一张，不与其他优惠券同享。",
                    "用券码WARM30满¥299减¥30，不能和新人券HELLO15等其他优惠券叠加。"])  # fmt: skip
    return g.c(["Enter WARM30 at checkout for ¥30 off orders over ¥299; it's one per order and can't be combined "
                "with other coupons.", "The code WARM30 takes ¥30 off orders over ¥299 (one per order, not stackable "
                "with other coupons such as HELLO15).", "Use WARM30 at checkout: ¥30 off orders over ¥299, one code per "
                "order."])  # fmt: skip


def bundle_rule(g: G, lang: str, also: bool = False) -> str:
    if lang == "zh":
        return g.c([f"{BUNDLE_ZH}：羊毛盖毯+两个亚麻抱枕套，组合价¥499（原价¥597）。",
                    f"{'还有' if also else ''}{BUNDLE_ZH}是一条羊毛盖毯配两个亚麻抱枕套，只要¥499，比单买省¥98。"])  # fmt: skip
    return g.c([f"The {BUNDLE_EN} is a Wool Throw plus two Linen Cushion Covers for ¥499 (¥597 separately).",
                f"There is also the {BUNDLE_EN}: a Wool Throw and two Linen Cushion Covers for ¥499, saving you ¥98." if also else
                f"The {BUNDLE_EN} gives you a Wool Throw and two Linen Cushion Covers for ¥499, saving you ¥98."])  # fmt: skip


def apology(g: G, lang: str, kind: str = "general") -> str:
    if lang == "zh":
        if kind == "late":
            return g.c(["抱歉让您久等了！", "非常抱歉，让您等了这么久。", "很抱歉包裹还没到，让您着急了。"])
        return g.c(["非常抱歉给您带来不便！", "真的很抱歉，让您失望了。", "很抱歉遇到这种情况。", "非常抱歉！",
                    "实在不好意思，给您添麻烦了。"])  # fmt: skip
    if kind == "late":
        return g.c(["I'm sorry you've had to wait.", "Sorry for the wait — that's frustrating.",
                    "I'm sorry your parcel hasn't arrived yet."])  # fmt: skip
    return g.c(["I'm really sorry about that.", "I'm so sorry for the trouble.", "Sorry to hear that!",
                "I apologise for the inconvenience.", "I'm sorry — that's not what we want you to receive."])  # fmt: skip


def ask_order(g: G, lang: str, photo: bool = False) -> str:
    if lang == "zh":
        s = g.c(["麻烦提供一下订单号（LL开头加8位数字，例如LL20261234），我马上帮您查。",
                 "请把订单号发给我，我先核实一下订单情况。", "方便告诉我订单号吗？在“我的订单”里可以找到，是LL开头的。",
                 "您先发一下订单号，我查到订单后立刻给您处理。", "请问您的订单号是多少？我帮您看一下。"])  # fmt: skip
        if photo:
            s = g.c(["麻烦提供一下订单号，再拍几张问题部位的照片发我，我马上处理。", "请把订单号和问题部位的照片发给我，我尽快帮您处理。",
                     "方便发一下订单号（LL开头加8位数字）和一两张照片吗？我核实后马上处理。", "您把订单号发我，顺便拍张照片，我这边马上跟进。"])  # fmt: skip
        return s
    s = g.c(["Could you share your order number (LL followed by 8 digits, e.g. LL20261234)? I'll look into it right away.",
             "May I have your order number first? You'll find it under My Orders or in your confirmation email.",
             "Please send me your order number and I'll check the details.",
             "What's your order number? I'll pull up the order and sort this out.",
             "Could you tell me the order number so I can check?"])  # fmt: skip
    if photo:
        s = g.c(["Could you send your order number and a photo or two of the problem? I'll sort it out right away.",
                 "Please share your order number (LL followed by 8 digits) and a photo of the issue, and I'll take care of it.",
                 "What's your order number? A quick photo of the problem would help too."])  # fmt: skip
    return s


def give_order(g: G, lang: str, o: str, extra: str = "") -> str:
    if g.p(0.1):
        o = o.lower()
    if lang == "zh":
        s = g.c(
            [o, f"订单号{o}", f"好的，{o}", f"是{o}", f"{o} 谢谢", f"订单号是{o}", f"{o}，麻烦尽快", f"{o}，你看下"]
        )
        return s + (f"，{extra}" if extra else "")
    s = g.c([o, f"It's {o}", f"Order number is {o}", f"sure, {o}", f"{o} - thanks", f"Here you go: {o}", f"{o}."])
    return s + (f". {extra}" if extra else "")


# --------------------------------------------------------------------------------------------------------
# 售前 pre-sales
# --------------------------------------------------------------------------------------------------------
def stock_note(p: Product, lang: str) -> str:
    """A sentence on the colour that is not simply in stock ('' when every colour is)."""
    out = [c for c in p.colours if stock(p, c[1])[0] != "in"]
    if not out:
        return ""
    (zh, en), (st, date) = out[0], stock(p, out[0][1])
    if st == "low":
        return f"其中{zh}库存紧张。" if lang == "zh" else f"{en} is running low."
    if st == "out":
        return (
            f"其中{zh}暂时缺货，预计{zh_date(date)}补货。"
            if lang == "zh"
            else f"{en} is sold out until about {en_date(date)}."
        )
    return (
        f"其中{zh}是预售，预计{zh_date(date)}发货。"
        if lang == "zh"
        else f"{en} is on pre-order and ships by {en_date(date)}."
    )


def ps_price(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c(ALL)
    n = talk(g, p, lang)
    if follow:
        q = u(g, lang, ["那这个多少钱？", "多少钱呢", "价格呢？", "这款什么价？"],
              ["And how much is it?", "How much?", "What's the price?", "and the price?"], opener=False)  # fmt: skip
    elif lang == "zh":
        q = u(g, lang, [f"{n}多少钱？", f"{n}什么价格", f"{n}现在卖多少？", f"{n}的价格是多少呢", f"看中了{n}，多少钱呀？",
                        f"{n}多钱", f"{n}怎么卖的", f"{n}一{p.unit}多少钱？"], "")  # fmt: skip
    else:
        v = "are" if plural(n) else "is"
        q = u(g, lang, "", [f"How much {v} the {n}?", f"What's the price of the {n}?", f"how much for the {n}",
                            f"What does the {n} cost?", f"Price for the {n}?", f"I like the {n}, how much {v} it?"])  # fmt: skip
    if lang == "zh":
        a = [ack(g, lang) if follow else hi(g, lang),
             g.c([f"{p.zh}售价¥{p.price}，", f"{p.zh}的价格是¥{p.price}，", f"{p.zh}现在是¥{p.price}，"]),
             options(p, lang) + "。", stock_note(p, lang)]  # fmt: skip
        if g.p(0.5):
            a.append(f"{p.pitch[0]}。")
    else:
        a = [
            ack(g, lang) if follow else hi(g, lang),
            f"The {p.en} {be(p)} ¥{p.price}, {options(p, lang)}.",
            stock_note(p, lang),
        ]
        if g.p(0.5):
            a.append(p.pitch[1][0].upper() + p.pitch[1][1:] + ".")
    return q, j(lang, a)


def ps_size(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c(CLOTHES)
    idx = g.n(0, len(p.sizes) - 1)
    lo_h = 150 if idx == 0 else SIZE_CHART[idx - 1][1] + 1
    h = g.n(lo_h, SIZE_CHART[idx][1])
    lo_w = 42 if idx == 0 else SIZE_CHART[idx - 1][2] + 1
    w = g.n(42, SIZE_CHART[idx][2]) if g.p(0.5) else g.n(lo_w, SIZE_CHART[idx][2])
    idx = size_for(h, w)
    size = p.sizes[idx]
    n = talk(g, p, lang)
    jin = w * 2
    imperial = lang == "en" and g.p(0.3)
    if lang == "zh":
        if follow:
            q = u(
                g,
                lang,
                [f"我{h}，{jin}斤，穿什么码？", f"那尺码怎么选，我身高{h}体重{w}公斤", f"{h}cm {w}kg选哪个码"],
                "",
                False,
            )
        else:
            q = u(g, lang, [f"我身高{h}，体重{jin}斤，{n}穿什么码？", f"{n}尺码怎么选？我{h}/{w}kg",
                            f"{h}cm，{w}kg，{n}选哪个码合适", f"我{h}，{jin}斤，{n}要多大码", f"{n}偏大还是偏小？我{h}cm {w}公斤"], "")  # fmt: skip
        kg = f"{w} kg"
        a = [hi(g, lang) if not follow else ack(g, lang), f"按您身高{h} cm、体重{kg}，{p.zh}建议选{size}码。"]
        if p.relaxed and idx > 0:
            a.append(
                g.c(
                    [
                        f"这款版型偏宽松，喜欢合身一点可以选{p.sizes[idx - 1]}码。",
                        f"版型偏宽松，想穿得利落些可以选小一码（{p.sizes[idx - 1]}码）。",
                    ]
                )
            )
        elif not p.relaxed:
            a.append("这款是标准版型，按平时的尺码选就好。")
    else:
        ft, inch = divmod(round(h / 2.54), 12)
        lb = round(w * 2.2046)
        if imperial:
            q = u(
                g,
                lang,
                "",
                [
                    f"Which size {n} for {ft}'{inch}\" and {lb} lbs?",
                    f"I'm {ft} ft {inch} and about {lb} lb, what size in the {n}?",
                ],
            )
        elif follow:
            q = u(
                g, lang, "", [f"What size should I get? I'm {h} cm, {w} kg", f"And sizing? {h}cm / {w}kg"], opener=False
            )
        else:
            q = u(g, lang, "", [f"I'm {h} cm and {w} kg, what size {n} should I get?", f"What size would you recommend in the {n}? I'm {h}cm, {w}kg",
                                f"size advice pls: {h} cm / {w} kg, {n}", f"Does the {n} run small? I'm {h} cm, {w} kg."])  # fmt: skip
        lead = f"That's about {h} cm and {w} kg, so " if imperial else f"For {h} cm and {w} kg, "
        a = [hi(g, lang) if not follow else ack(g, lang), f"{lead}I'd go with size {size} in the {p.en}."]
        if p.relaxed and idx > 0:
            a.append(
                f"{'They have' if plural(p.en) else 'It has'} a relaxed fit, so size down to {p.sizes[idx - 1]} if you prefer it closer to the body."
            )
        elif not p.relaxed:
            a.append("It's a regular fit, so your usual size works.")
    colour = g.c(p.colours)
    st, date = stock(p, colour[1], size)
    if st == "out":
        others = [c for c in p.colours if stock(p, c[1], size)[0] == "in"]
        if lang == "zh":
            when = f"预计{zh_date(date)}补货" if date else "暂无补货时间"
            a.append(f"不过{colour[0]}{size}码暂时缺货，{when}，{others[0][0]}{size}码有现货。")
        else:
            when = f"until about {en_date(date)}" if date else "with no restock date yet"
            a.append(f"{colour[1]} in {size} is sold out {when}, but {others[0][1]} in {size} is in stock.")
    elif g.p(0.5):
        a.append(f"{colour[0]}{size}码目前有货。" if lang == "zh" else f"{colour[1]} in {size} is in stock right now.")
    return q, j(lang, a)


def ps_stock(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    if p is None:
        p = g.c(ALL) if g.p(0.6) else P[g.c(["cardigan", "scarf", "trousers", "duvet", "throw", "rug"])]
    # pick an exception variant half the time when the product has one
    colour, size = g.c(p.colours), (g.c(p.sizes) if p.kind == "clothing" or p.id == "slippers" else None)
    exc = [(c, s) for (pid, c, s) in STOCK if pid == p.id]
    if exc and g.p(0.6):
        ce, se = g.c(exc)
        colour = next(c for c in p.colours if c[1] == ce)
        size = se if se else size
    st, date = stock(p, colour[1], size)
    n = talk(g, p, lang)
    sz_zh = f"{size}码" if size and p.kind == "clothing" else (f"{size}码" if size else "")
    sz_en = f" in {size}" if size else ""
    if lang == "zh":
        if follow:
            q = u(
                g,
                lang,
                [f"那{colour[0]}{sz_zh}有货吗？", f"{colour[0]}{sz_zh}还有吗", f"想要{colour[0]}的{sz_zh}，有现货吗"],
                "",
                False,
            )
        else:
            q = u(g, lang, [f"{n}{colour[0]}{sz_zh}有货吗？", f"{colour[0]}的{n}还有{sz_zh}吗", f"想要{n}，{colour[0]}{sz_zh}，有现货不",
                            f"{n}{colour[0]}{sz_zh}还能买到吗？", f"{colour[0]}{n}{sz_zh}是不是没货了"], "")  # fmt: skip
        a = [hi(g, lang) if not follow else ack(g, lang)]
        v = f"{p.zh}{colour[0]}{sz_zh}"
        if st == "in":
            a.append(g.c([f"有货的，{v}现货，下单后24小时内发货。", f"{v}目前有现货，今天下单24小时内就能发出。"]))
            if g.p(0.5):
                a.append(f"这款售价¥{p.price}。")
        elif st == "low":
            a.append(f"{v}还有货，不过库存比较紧张，只剩少量，喜欢的话建议尽早下单。")
        elif st == "out":
            others = [c[0] for c in p.colours if stock(p, c[1], size)[0] == "in"]
            when = f"预计{zh_date(date)}补货" if date else "暂时还没有补货时间"
            a.append(f"抱歉，{v}暂时缺货，{when}；{'、'.join(others)}{sz_zh}有现货。")
        else:
            a.append(
                f"{v}目前是预售，预计{zh_date(date)}发货；"
                + "、".join(c[0] for c in p.colours if c != colour)
                + "有现货，24小时内发货。"
            )
    else:
        if follow:
            q = u(g, lang, "", [f"Do you have it in {colour[1]}{sz_en}?", f"And is {colour[1]}{sz_en} in stock?",
                                f"Any {colour[1]}{sz_en} left?"], opener=False)  # fmt: skip
        else:
            c = colour[1].lower() if g.p(0.6) else colour[1]
            q = u(g, lang, "", [f"{'Are' if plural(n) else 'Is'} the {n} in {c}{sz_en} in stock?", f"Do you have the {c} {n}{sz_en}?",
                                f"Any {c} {n}{sz_en} left?", f"is {c}{sz_en} available for the {n}"])  # fmt: skip
        a = [hi(g, lang) if not follow else ack(g, lang)]
        v = f"the {p.en} in {colour[1]}{sz_en}"
        if st == "in":
            a.append(
                g.c(
                    [
                        f"Yes, {v} {be(p)} in stock and ships within 24 hours.",
                        f"Good news: {v} {be(p)} in stock, and orders go out within 24 hours.",
                    ]
                )
            )
            if g.p(0.5):
                a.append(f"{'They are' if plural(p.en) else 'It is'} ¥{p.price}.")
        elif st == "low":
            a.append(f"Yes, {v} {be(p)} still available, but stock is low, so I'd order soon if you like it.")
        elif st == "out":
            others = [c[1] for c in p.colours if stock(p, c[1], size)[0] == "in"]
            when = f"we expect a restock around {en_date(date)}" if date else "there's no restock date yet"
            a.append(
                f"Sorry, {v} {be(p)} sold out and {when}; {' and '.join(others)}{sz_en} {'is' if len(others) == 1 else 'are'} in stock."
            )
        else:
            a.append(
                f"{v[0].upper() + v[1:]} {be(p)} on pre-order and ships by {en_date(date)}; "
                + " and ".join(c[1] for c in p.colours if c != colour)
                + " is in stock and ships within 24 hours."
            )
    return q, j(lang, a)


def ps_colours(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c([x for x in ALL if len(x.colours) > 1] + [P["duvet"]])
    n = talk(g, p, lang)
    fam = g.c(FAMILIES)
    match = [c for c in p.colours if COLOUR_FAMILY[c[1]][0] == fam[0]]
    specific = g.p(0.5)
    if lang == "zh":
        if specific:
            q = u(
                g,
                lang,
                [f"{n}有没有{fam[0]}的？", f"{n}有{fam[0]}吗", f"想要{fam[0]}的{n}，有吗？"]
                if not follow
                else [f"有{fam[0]}的吗？"],
                "",
                not follow,
            )
        else:
            q = u(
                g,
                lang,
                [f"{n}有哪些颜色？", f"{n}有几个颜色可以选", f"{n}都有什么颜色"]
                if not follow
                else ["有哪些颜色？", "颜色有几种？"],
                "",
                not follow,
            )
        a = [hi(g, lang) if not follow else ack(g, lang)]
        if specific and match:
            a.append(f"有的，{p.zh}有{match[0][0]}，")
            a.append(
                f"另外还有{'、'.join(c[0] for c in p.colours if c != match[0])}可选。"
                if len(p.colours) > 1
                else "目前就这一个颜色。"
            )
        elif specific:
            a.append(f"{p.zh}暂时没有{fam[0]}，目前有{cols(p, lang)}。")
        else:
            a.append(f"{p.zh}有{cols(p, lang)}{ZH_NUM[len(p.colours)]}个颜色，售价¥{p.price}。")
        a.append(stock_note(p, lang))
    else:
        if specific:
            q = u(
                g,
                lang,
                "",
                [f"Does the {n} come in {fam[1]}?", f"Is there a {fam[1]} {n}?"]
                if not follow
                else [f"Is there a {fam[1]} one?"],
                not follow,
            )
        else:
            q = u(
                g,
                lang,
                "",
                [f"What colours does the {n} come in?", f"Which colors are available for the {n}?"]
                if not follow
                else ["What colours are there?"],
                not follow,
            )
        a = [hi(g, lang) if not follow else ack(g, lang)]
        if specific and match:
            rest = [c[1] for c in p.colours if c != match[0]]
            a.append(
                f"Yes, the {p.en} {verb(p, 'comes')} in {match[0][1]}"
                + (f", and also in {' and '.join(rest)}." if rest else ".")
            )
        elif specific:
            doesnt = verb(p, "doesn't")
            a.append(f"The {p.en} {doesnt} come in {fam[1]}, I'm afraid; the colours are {cols(p, lang)}.")
        else:
            a.append(f"The {p.en} {verb(p, 'comes')} in {cols(p, lang)}, at ¥{p.price}.")
        a.append(stock_note(p, lang))
    return q, j(lang, a)


def ps_ship(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c(ALL)
    n = talk(g, p, lang)
    abroad = g.p(0.55 if lang == "en" else 0.2)
    country = g.c(COUNTRIES)
    free = p.price >= POL["free_shipping_over"]
    if lang == "zh":
        if abroad:
            q = u(g, lang, [f"能寄到{country[0]}吗？想买{n}", f"我在{country[0]}，{n}能发过来吗，要多久", f"{n}可以国际邮寄到{country[0]}吗？"]
                  if not follow else [f"能寄到{country[0]}吗？", f"寄{country[0]}要多久？"], "", not follow)  # fmt: skip
            a = [
                hi(g, lang) if not follow else ack(g, lang),
                f"可以的，{country[0]}在我们的配送范围内。",
                "下单后24小时内发货，国际快递一般5–10天送达，运费统一¥120，如有进口关税由收件人承担。",
            ]
            a.append(f"{p.zh}售价¥{p.price}，目前有现货。" if not follow else f"{p.zh}有现货，可以直接下单。")
        else:
            city = g.c(ZH_CITIES)
            q = u(g, lang, [f"我在{city}，{n}下单后几天能到？", f"{n}发{city}要几天", f"今天下单{n}，多久能到{city}？",
                            f"寄到{city}大概多久？想买{n}", f"{n}从哪发货？到{city}快吗"]
                  if not follow else [f"寄到{city}要几天？", f"发{city}快吗", "几天能到？我在" + city], "", not follow)  # fmt: skip
            a = [hi(g, lang) if not follow else ack(g, lang),
                 g.c([f"{p.zh}有现货，从杭州仓发出，下单后24小时内发货，寄到{city}一般2–4天送达。",
                      f"{p.zh}下单后24小时内发货，发往{city}一般2–4天就能收到。"])]  # fmt: skip
            if free:
                a.append(f"这款¥{p.price}，已满¥199包邮。")
            else:
                a.append(f"订单满¥199包邮，单买这款¥{p.price}需付¥12运费。")
    else:
        if abroad:
            q = u(g, lang, "", [f"Do you ship to {country[1]}? I'd like the {n}", f"Can I get the {n} delivered to {country[1]}?",
                                f"How long does shipping to {country[1]} take for the {n}?"]
                  if not follow else [f"Can you ship it to {country[1]}?", f"How long to {country[1]}?"], not follow)  # fmt: skip
            a = [
                hi(g, lang) if not follow else ack(g, lang),
                f"Yes, we ship to {country[1]}.",
                "Orders leave our Hangzhou warehouse within 24 hours and international delivery takes 5–10 days, "
                "with a flat ¥120 shipping fee; any import duties are paid by the recipient.",
            ]
            a.append(
                f"The {p.en} {be(p)} ¥{p.price} and in stock."
                if not follow
                else f"The {p.en} {be(p)} in stock, so it can go out today."
            )
        else:
            city = g.c(EN_CITIES)
            q = u(g, lang, "", [f"How long does delivery to {city} take? Looking at the {n}", f"If I order the {n} today, when will it reach {city}?",
                                f"I'm in {city}, how fast can you deliver the {n}?"]
                  if not follow else [f"How long to {city}?", f"And delivery to {city}?"], not follow)  # fmt: skip
            a = [
                hi(g, lang) if not follow else ack(g, lang),
                f"We dispatch within 24 hours from Hangzhou, and delivery to {city} usually takes 2–4 days.",
            ]
            if free:
                a.append(f"At ¥{p.price} the {p.en} also {verb(p, 'qualifies')} for free shipping on orders over ¥199.")
            else:
                a.append(f"The {p.en} {be(p)} ¥{p.price}; shipping is free on orders over ¥199, otherwise it's ¥12.")
    return q, j(lang, a)


def ps_care(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c(ALL)
    n = talk(g, p, lang)
    if lang == "zh":
        q = u(g, lang, [f"{n}能机洗吗？", f"{n}怎么洗", f"{n}好打理吗，会不会缩水", f"{n}是什么材质的？", f"{n}是纯棉的吗"]
              if not follow else ["能机洗吗？", "这个怎么洗呢", "是什么面料？"], "", not follow)  # fmt: skip
        a = [
            hi(g, lang) if not follow else ack(g, lang),
            "按建议洗护基本不会缩水。" if "缩水" in q else "",
            f"{p.zh}是{p.material[0]}，{p.care[0]}。",
        ]
        if g.p(0.4):
            a.append(f"售价¥{p.price}。")
    else:
        q = u(g, lang, "", [f"Can the {n} go in the washing machine?", f"How do I wash the {n}?", f"What is the {n} made of?",
                            f"Will the {n} shrink in the wash?"]
              if not follow else ["Can I machine wash it?", "What's it made of?"], not follow)  # fmt: skip
        a = [
            hi(g, lang) if not follow else ack(g, lang),
            "It won't shrink noticeably if you follow the care label." if "shrink" in q.lower() else "",
            f"The {p.en} {be(p)} {p.material[1]}; {p.care[1]}.",
        ]
        if g.p(0.4):
            a.append(f"{'They are' if plural(p.en) else 'It is'} ¥{p.price}.")
    return q, j(lang, a)


def ps_dims(g: G, lang: str, p: Product | None = None, follow: bool = False) -> tuple[str, str]:
    p = p or g.c(HOME + [P["scarf"]])
    n = talk(g, p, lang)
    if p.id == "bedding" or (p.id == "duvet" and g.p(0.6)):
        bed = g.c(["1.5", "1.8"])
        if lang == "zh":
            q = u(
                g,
                lang,
                [f"我家是{bed}米的床，{n}合适吗？", f"{bed}的床用{n}选哪个", f"{n}适合{bed}米床吗"],
                "",
                not follow,
            )
            if p.id == "bedding":
                cover = "200×230 cm" if bed == "1.5" else "220×240 cm"
                a = [
                    hi(g, lang),
                    f"{bed}米的床选{p.zh}的{bed} m床款就好，被套{cover}，含床单和两个枕套，两种规格都是¥{p.price}。",
                ]
            else:
                a = [hi(g, lang), f"合适的，{p.zh}尺寸200×230 cm，{bed}米的床盖着刚好，售价¥{p.price}。"]
        else:
            q = u(g, lang, "", [f"Will the {n} fit a {bed} m bed?", f"Which {n} for a {bed}m bed?"], not follow)
            if p.id == "bedding":
                cover = "200×230 cm" if bed == "1.5" else "220×240 cm"
                a = [
                    hi(g, lang),
                    f"For a {bed} m bed choose the {bed} m {p.en}: the duvet cover is {cover}, with a flat sheet "
                    f"and two pillowcases, and both sizes are ¥{p.price}.",
                ]
            else:
                a = [hi(g, lang), f"Yes, the {p.en} is 200×230 cm, which suits a {bed} m bed well; it's ¥{p.price}."]
        if p.id == "duvet" and g.p(0.5):
            a.append("目前库存比较紧张。" if lang == "zh" else "Stock is running low, though.")
    elif p.id == "curtain" and g.p(0.6):
        width = g.c([1.2, 1.5, 1.8, 2.0, 2.4, 2.8, 3.0])
        panels = max(2, -(-round(width * 1.8 * 10) // 14))
        total = panels * p.price
        w = f"{width:g}"
        if lang == "zh":
            q = u(
                g,
                lang,
                [f"窗户{w}米宽，遮光窗帘要买几片？", f"我家窗{w}米，窗帘买几片够", f"{w}米的窗户需要几片窗帘"],
                "",
                not follow,
            )
            a = [
                hi(g, lang),
                f"{p.zh}单片140×250 cm，建议总宽是窗宽的1.5–2倍，{w}米的窗户买{panels}片比较合适，"
                f"每片¥{p.price}，共¥{total}。",
            ]
        else:
            q = u(g, lang, "", [f"My window is {w} m wide, how many blackout curtain panels do I need?",
                                f"how many curtain panels for a {w}m window"], not follow)  # fmt: skip
            a = [
                hi(g, lang),
                f"Each {p.en} panel is 140×250 cm, and we suggest a total width of 1.5–2× the window, so "
                f"{panels} panels suit a {w} m window: ¥{p.price} each, ¥{total} in total.",
            ]
    else:
        if lang == "zh":
            q = u(g, lang, [f"{n}尺寸多大？", f"{n}是多大的", f"{n}有多大尺寸呀", f"{n}长宽是多少"]
                  if not follow else ["尺寸多大？", "多大的？"], "", not follow)  # fmt: skip
            a = [
                hi(g, lang) if not follow else ack(g, lang),
                f"{p.zh}的尺寸是{p.sizes[0]}，{p.pitch[0]}，售价¥{p.price}。",
            ]
        else:
            q = u(g, lang, "", [f"What size is the {n}?", f"How big is the {n}?", f"What are the dimensions of the {n}?"]
                  if not follow else ["How big is it?", "What size is it?"], not follow)  # fmt: skip
            a = [hi(g, lang) if not follow else ack(g, lang), f"The {p.en} measures {p.sizes[0]} and costs ¥{p.price}."]
    return q, j(lang, a)


GIFTS = [
    ("送妈妈的礼物", "a gift for my mum", ["scarf", "cardigan", "robe", "throw", "slippers"]),
    ("给男朋友挑个礼物", "a present for my boyfriend", ["scarf", "beanie", "shirt", "robe"]),
    ("冬天沙发上盖的毯子", "something warm for the sofa", ["throw", "flannel"]),
    ("新房卧室的床品", "bedding for a new bedroom", ["bedding", "duvet"]),
    ("浴室用的东西", "something for the bathroom", ["towel", "robe"]),
    ("公司交换礼物，小一点的", "a small gift for a work gift exchange", ["beanie", "cushion", "slippers", "towel"]),
    ("在家穿的舒服衣服", "something comfy to wear at home", ["lounge", "robe", "slippers"]),
    ("客厅软装", "something to make the living room cosier", ["cushion", "rug", "throw", "curtain"]),
]


def ps_budget(g: G, lang: str) -> tuple[str, str]:
    zh_what, en_what, ids = g.c(GIFTS)
    cands = [P[i] for i in ids]
    lo = min(c.price for c in cands)
    budget = g.c([b for b in (100, 150, 200, 300, 400, 500, 600, 800, 1000) if b >= lo])
    fit = [c for c in cands if c.price <= budget]
    fit = sorted(fit, key=lambda c: -c.price)[:3]
    picks = g.sample(fit, min(2, len(fit)))
    if lang == "zh":
        q = u(
            g,
            lang,
            [
                f"想买{zh_what}，预算{budget}左右，有推荐吗？",
                f"预算{budget}以内，{zh_what}买什么好",
                f"{zh_what}，{budget}块以内推荐一下",
            ],
            "",
        )
        a = [hi(g, lang), f"预算¥{budget}以内，推荐{picks[0].zh}（¥{picks[0].price}），{picks[0].pitch[0]}。"]
        if len(picks) > 1:
            a.append(f"{picks[1].zh}（¥{picks[1].price}）也不错，{picks[1].pitch[0]}。")
    else:
        q = u(g, lang, "", [f"I'm looking for {en_what}, budget around ¥{budget}. Any ideas?", f"What would you suggest for {en_what} under ¥{budget}?",
                            f"Need {en_what}, max {budget} yuan"])  # fmt: skip
        a = [hi(g, lang), f"Within ¥{budget}, I'd suggest the {picks[0].en} (¥{picks[0].price}): {picks[0].pitch[1]}."]
        if len(picks) > 1:
            a.append(f"The {picks[1].en} (¥{picks[1].price}) is another good pick: {picks[1].pitch[1]}.")
    return q, j(lang, a)


def ps_freeship(g: G, lang: str) -> tuple[str, str]:
    p = g.c(CHEAP)
    k = g.n(1, 3)
    t = k * p.price
    en_pl = {
        "cushion": "cushion covers",
        "towel": "bath towels",
        "flannel": "flannel blankets",
        "beanie": "beanies",
        "slippers": "pairs of slippers",
    }[p.id]
    en_one = {
        "cushion": "cushion cover",
        "towel": "bath towel",
        "flannel": "flannel blanket",
        "beanie": "beanie",
        "slippers": "pair of slippers",
    }[p.id]
    if lang == "zh":
        cnt = f"{ZH_NUM[k]}{p.unit}"
        q = u(
            g,
            lang,
            [
                f"买{cnt}{talk(g, p, lang)}包邮吗？",
                f"{talk(g, p, lang)}拿{cnt}，运费多少",
                f"{cnt}{talk(g, p, lang)}要运费吗",
            ],
            "",
        )
        a = [hi(g, lang), f"{cnt}{p.zh}共¥{t}，"]
        if t >= 199:
            a.append("满¥199就包邮了，下单后24小时内发货。")
        else:
            add = next(c for c in sorted(ALL, key=lambda x: x.price) if t + c.price >= 199)
            a.append(f"还差¥{199 - t}包邮，不满¥199运费是¥12。")
            a.append(f"加一{add.unit}{add.zh}（¥{add.price}）就能包邮。")
    else:
        what = f"{k} {en_pl if k > 1 else en_one}"
        q = u(
            g,
            lang,
            "",
            [f"If I buy {what}, is shipping free?", f"Do I pay shipping for {what}?", f"shipping cost for {what}?"],
        )
        a = [hi(g, lang), f"{k} × {p.en} comes to ¥{t}."]
        if t >= 199:
            a.append("That's over ¥199, so shipping is free, and it ships within 24 hours.")
        else:
            add = next(c for c in sorted(ALL, key=lambda x: x.price) if t + c.price >= 199)
            a.append(
                f"Shipping is free on orders over ¥199; below that the shipping fee is ¥12, so you're ¥{199 - t} short."
            )
            a.append(f"Adding the {add.en} (¥{add.price}) would make it free.")
    return q, j(lang, a)


def ps_compare(g: G, lang: str) -> tuple[str, str]:
    pairs = [
        (["羊毛盖毯和法兰绒毛毯哪个更暖和？", "盖毯和法兰绒毯怎么选"], ["Which is warmer, the wool throw or the flannel blanket?", "wool throw vs flannel blanket?"],
         "羊毛盖毯（¥459）是100%羊毛，更保暖、有分量，建议干洗；法兰绒毛毯（¥159）更轻软，可以直接机洗。怕麻烦选法兰绒，追求保暖选羊毛盖毯。",
         "The Wool Throw (¥459) is 100% wool, heavier and warmer, best dry-cleaned; the Flannel Blanket (¥159) is lighter and machine washable. "
         "For warmth go wool, for easy care go flannel."),
        (["浴袍和家居服哪个适合冬天在家穿？", "家居服套装跟浴袍比哪个实用"], ["Robe or lounge set for winter at home?", "Is the lounge set or the robe better for lounging?"],
         "抓绒家居服套装（¥219）是上衣加长裤，冬天在家穿一整天都暖和；长绒棉浴袍（¥299）吸水快，更适合洗澡后穿。想整天穿选家居服，洗完澡穿选浴袍。",
         "The Fleece Lounge Set (¥219) is a top and trousers that keep you warm all day; the Long-Staple Cotton Robe (¥299) is very absorbent "
         "and best after a bath. All-day wear: lounge set; after the shower: robe."),
        (["羊绒围巾和羊毛开衫，送长辈哪个好？", "送婆婆围巾还是开衫"], ["Cashmere scarf or wool cardigan as a gift for my grandmother?"],
         "羊绒围巾（¥329）不挑尺码，100%山羊绒，送礼不容易出错；云朵羊毛开衫（¥399）更实穿，但需要知道身高体重选码。不确定尺码的话推荐围巾。",
         "The Cashmere Scarf (¥329) needs no size and is 100% cashmere, so it's a safe gift; the Cloud Wool Cardigan (¥399) gets more wear but "
         "you need her size. If you're unsure of the size, go for the scarf."),
        (["羽绒被和四件套都要买吗，新家第一次买", "羽绒被需要配被套吗"], ["Do I need a duvet cover for the down duvet?", "Should I buy the duvet and the bedding set together?"],
         "白鹅绒羽绒被（¥899）是被芯，需要配被套；水洗棉四件套（¥599）里的被套200×230 cm（1.5 m床款）正好配这条羽绒被，1.8 m床款被套220×240 cm也能用。",
         "The Goose-Down Duvet (¥899) is the filling, so it needs a cover; the Washed-Cotton Bedding Set (¥599) has a 200×230 cm cover in the 1.5 m "
         "version that fits it exactly, and the 1.8 m version (220×240 cm) works too."),
    ]  # fmt: skip
    zq, eq, za, ea = g.c(pairs)
    q = u(g, lang, zq, eq)
    return q, j(lang, [hi(g, lang), za if lang == "zh" else ea])


def ps_preorder(g: G, lang: str) -> tuple[str, str]:
    which = g.c(["rug", "cardigan", "throw"])
    if which == "rug":
        q = u(g, lang, ["灰色地毯显示预售是什么意思？", "灰色的编织地毯什么时候能发货", "手工地毯灰色现在下单什么时候到？"],
              ["The grey rug says pre-order, when will it ship?", "When does the Grey woven rug ship?", "what does pre-order mean on the grey rug"])  # fmt: skip
        za = "灰色手工编织地毯目前是预售，现在下单预计12月15日发货，发货后2–4天送达；米白色有现货，24小时内发货。地毯尺寸120×180 cm，售价¥699。"
        ea = (
            "The Hand-Woven Rug in Grey is on pre-order: orders placed now ship by December 15 and then take 2–4 days to arrive. "
            "Ivory is in stock and ships within 24 hours. The rug is 120×180 cm and costs ¥699."
        )
    elif which == "cardigan":
        q = u(
            g,
            lang,
            ["炭灰色开衫XL码什么时候补货？", "云朵开衫炭灰XL没货了，还会有吗"],
            ["When will the Charcoal cardigan be back in XL?", "cardigan charcoal XL restock?"],
        )
        za = "云朵羊毛开衫炭灰XL码预计12月10日补货，到货后24小时内发货。燕麦色和雾蓝的XL码现在有货，售价都是¥399。"
        ea = "The Cloud Wool Cardigan in Charcoal XL should be back around December 10 and ships within 24 hours of the restock. Oat and Mist Blue in XL are in stock now, all at ¥399."
    else:
        q = u(
            g,
            lang,
            ["焦糖色的羊毛盖毯还会补货吗？", "盖毯焦糖色什么时候有货"],
            ["Is the Caramel wool throw coming back?", "when is the caramel throw restocked"],
        )
        za = "羊毛盖毯焦糖色预计12月8日补货。燕麦色和格纹现在有现货，尺寸130×170 cm，售价¥459。"
        ea = (
            "The Wool Throw in Caramel is due back around December 8. Oat and Check are in stock now: 130×170 cm, ¥459."
        )
    return q, j(lang, [hi(g, lang), za if lang == "zh" else ea])


PS_SINGLE = [(ps_price, 3), (ps_size, 3), (ps_stock, 3), (ps_colours, 2), (ps_ship, 3), (ps_care, 2), (ps_dims, 2),
             (ps_budget, 2), (ps_freeship, 2), (ps_compare, 1), (ps_preorder, 1)]  # fmt: skip
PS_FOLLOW = {"clothing": [ps_price, ps_size, ps_stock, ps_colours, ps_ship, ps_care],
             "acc": [ps_price, ps_stock, ps_colours, ps_ship, ps_care],
             "home": [ps_price, ps_stock, ps_colours, ps_ship, ps_care, ps_dims]}  # fmt: skip


def weighted(g: G, table: list) -> object:
    total = sum(w for _, w in table)
    x = g.r.random() * total
    for item, w in table:
        x -= w
        if x < 0:
            return item
    return table[-1][0]


def with_help(g: G, lang: str, a: str) -> str:
    return j(lang, [a, help_(g, lang)])


def presales(g: G, lang: str) -> list[str]:
    if g.p(0.3):  # multi-turn about one product
        p = g.c(ALL)
        funcs = [f for f in PS_FOLLOW[p.kind] if not (f is ps_dims and p.id in ("bedding", "duvet", "curtain"))]
        steps = g.sample(funcs, g.c([2, 2, 3]))
        turns: list[str] = []
        for i, f in enumerate(steps):
            q, a = f(g, lang, p, follow=i > 0)
            last = i == len(steps) - 1
            turns += [q, with_help(g, lang, a) if last or g.p(0.2) else a]
        return turns
    f = weighted(g, PS_SINGLE)
    q, a = f(g, lang)
    return [q, with_help(g, lang, a)]


# --------------------------------------------------------------------------------------------------------
# 售后 after-sales
# --------------------------------------------------------------------------------------------------------
DEFECTS = {  # product -> [(zh, en)]
    "cardigan": [
        ("袖口开线了", "the cuff seam has come apart"),
        ("洗了一次就起球很严重", "it's pilling badly after one wash"),
    ],
    "shirt": [("扣子掉了两颗", "two buttons fell off"), ("领口有一块黄渍", "there's a yellow stain on the collar")],
    "scarf": [("有个小破洞", "there's a small hole in it"), ("边上抽丝了", "it has a pulled thread along the edge")],
    "lounge": [
        ("裤子的松紧带断了", "the waistband elastic snapped"),
        ("裤腿有一块污渍", "there's a stain on the trouser leg"),
    ],
    "beanie": [("帽子上有个洞", "there's a hole in it")],
    "trousers": [("裤腰的线开了", "the waistband seam is coming apart"), ("拉链坏了拉不上", "the zip is broken")],
    "robe": [("腰带的线开了", "the belt seam has split"), ("洗完掉色很严重", "the colour ran badly in the first wash")],
    "bedding": [
        ("床单洗一次就缩水很严重", "the sheet shrank a lot after one wash"),
        ("被套有一道破口", "the duvet cover has a tear"),
    ],
    "duvet": [("一直在漏毛", "it keeps shedding down"), ("有一股很重的异味", "it has a strong smell")],
    "throw": [("有几处抽丝", "it has several pulled threads"), ("边缘的线散开了", "the edge is unravelling")],
    "cushion": [("拉链坏了", "the zip is broken"), ("上面有一块污点", "there's a stain on the front")],
    "towel": [("有污渍", "it has a stain"), ("掉毛特别厉害", "it sheds lint everywhere")],
    "curtain": [("挂钩断了好几个", "several hooks are broken"), ("窗帘上有一道口子", "there's a rip in the fabric")],
    "rug": [("边缘散线了", "the edge is fraying"), ("收到的时候是湿的还有霉点", "it arrived damp with mould spots")],
    "flannel": [("有个破洞", "there's a hole in it")],
    "slippers": [("鞋底开胶了", "the sole came unglued"), ("鞋面破了个口子", "the upper has ripped")],
}
PAY = [
    ("支付宝", "Alipay"),
    ("微信支付", "WeChat Pay"),
    ("银行卡", "bank card"),
    ("信用卡", "credit card"),
    ("PayPal", "PayPal"),
]


def as_defect(g: G, lang: str) -> list[str]:
    p = g.c(ALL)
    dz, de = g.c(DEFECTS[p.id])
    n = talk(g, p, lang)
    o = g.order()
    angry = g.p(0.35)
    d = g.n(1, 12)
    fix = g.c(["exchange", "refund", "choice"])
    if lang == "zh":
        q = u(g, lang, [f"收到的{n}{dz}", f"刚拿到{n}，{dz}，怎么处理？", f"你们的{n}{dz}！", f"买的{n}{dz}，能换吗", f"{n}{dz}，我要退款"]
              if not angry else [f"{n}{dz}，什么质量啊！！", f"太失望了，{n}才用几天就{dz}", f"你们怎么回事，{n}{dz}"], "")  # fmt: skip
        fix = "exchange" if "换" in q else "refund" if "退款" in q else fix
        a1 = j(lang, [apology(g, lang), ask_order(g, lang, photo=True)])
        q2 = give_order(
            g, lang, o, g.c(["", "照片发你了", f"{ZH_NUM[min(d, 10)] if d <= 10 else d}天前收到的", "图片已上传"])
        )
        if fix == "exchange":
            res = f"可以免费为您换一{p.unit}新的，来回运费由我们承担。"
        elif fix == "refund":
            res = "可以为您办理退货退款，运费由我们承担，仓库收到退货后3个工作日内原路退款。"
        else:
            res = "可以免费换新，也可以退货退款（收到退货后3个工作日内原路退回），来回运费都由我们承担，您看选哪种？"
        a2 = j(lang, [f"查到订单{o}了，", g.c(["再次抱歉！", "非常抱歉！", "给您添麻烦了。"]),
                      f"这是质量问题，签收15天内都可以处理，{res}", g.c(["快递员会上门取件，您不用自己寄。", "我已经帮您提交了申请，稍后会有短信通知。"])])  # fmt: skip
    else:
        q = u(g, lang, "", [f"My {n} arrived and {de}.", f"Problem with my {n}: {de}.", f"The {n} I ordered — {de}. What can you do?",
                            f"I'd like a refund, my {n} arrived and {de}.", f"Can I get a replacement? The {n} I got — {de}."]
              if not angry else [f"Really disappointed with my {n}: {de}!", f"My {n}: {de}. Not acceptable for {p.price} yuan."])  # fmt: skip
        fix = "exchange" if "replacement" in q else "refund" if "refund" in q else fix
        a1 = j(lang, [apology(g, lang), ask_order(g, lang, photo=True)])
        q2 = give_order(g, lang, o, g.c(["", "Photo attached", f"Got it {d} days ago", "I've uploaded the pictures"]))
        if fix == "exchange":
            res = "we'll send you a replacement free of charge and cover the shipping both ways."
        elif fix == "choice":
            res = "you can have a free replacement or a full refund (back to your original payment method within 3 business days of the return reaching us), with shipping on us. Which would you prefer?"
        else:
            res = "we'll refund you in full and cover the return shipping; the refund goes back to your original payment method within 3 business days of the return reaching us."
        a2 = j(lang, [f"Thanks, I've found order {o}.", g.c(["Sorry again.", "Again, I'm sorry about this."]),
                      f"Defects are covered for 15 days from delivery, so {res}", g.c(["A courier will collect the item from you.", "I've logged it and you'll get an email with the next steps."])])  # fmt: skip
    return [q, a1, q2, a2]


def as_return(g: G, lang: str) -> list[str]:
    p = g.c(ALL)
    n = talk(g, p, lang)
    o = g.order()
    d = g.c([1, 2, 3, 4, 5, 6, 6, 8, 9, 10, 12])
    ok = d <= 7
    if lang == "zh":
        why = g.c(["不太喜欢", "颜色和想象的不一样", "买重复了", "尺码不合适", "家里人说不好看", "不想要了"])
        q = u(
            g,
            lang,
            [
                f"{n}{why}，想退货",
                f"买的{n}{why}，可以退吗？",
                f"{n}能七天无理由退吗",
                "怎么申请退货啊",
                f"{n}想退掉，怎么弄",
            ],
            "",
        )
        a1 = j(lang, [g.c(["好的，没问题。", "可以的。", "收到商品7天内可以无理由退货。", ""]), ask_order(g, lang)])
        q2 = give_order(g, lang, o, g.c(["", f"{ZH_NUM[d] if d <= 10 else d}天前收到的", "吊牌还在", "没穿过"]))
        if ok:
            a2 = j(lang, [f"订单{o}是{d}天前签收的，还在7天无理由退货期内。",
                          g.c(["请在“我的订单”里点“申请退货”，商品保持未使用、吊牌完好，寄回运费需要您承担；",
                               "您在订单页提交退货申请后寄回即可，商品需未使用、吊牌完好，无理由退货的寄回运费由您承担；"]),
                          "仓库收到后3个工作日内原路退款。"])  # fmt: skip
        else:
            a2 = j(
                lang,
                [
                    f"查了一下，订单{o}已经签收{d}天，",
                    "很抱歉超过了7天无理由退货期，没办法办理无理由退货。",
                    "如果商品有质量问题，签收15天内可以免费换货，您拍照发我就行。",
                ],
            )
    else:
        why = g.c(["I don't love the colour", "it's not quite what I expected", "I ordered two by mistake", "it doesn't fit",
                   "I changed my mind"])  # fmt: skip
        q = u(g, lang, "", [f"I'd like to return the {n}, {why}.", f"Can I send back the {n}? {why[0].upper() + why[1:]}.",
                            "How do I return something?", f"what's the return process for the {n}"])  # fmt: skip
        a1 = j(
            lang,
            [
                g.c(
                    [
                        "Happy to help with that.",
                        "Of course.",
                        "You can return items within 7 days of delivery, no reason needed.",
                    ]
                ),
                ask_order(g, lang),
            ],
        )
        q2 = give_order(g, lang, o, g.c(["", f"It arrived {d} days ago", "Tags still on", "Never used it"]))
        if ok:
            a2 = j(lang, [f"Order {o} was delivered {d} day{'s' if d > 1 else ''} ago, so it's within the 7-day no-reason return window.",
                          "Please start the return under My Orders and send the item back unused with tags on; return shipping is on you for no-reason returns.",
                          "Your refund goes to the original payment method within 3 business days of the item reaching our warehouse."])  # fmt: skip
        else:
            a2 = j(lang, [f"I've checked order {o}: it was delivered {d} days ago, so I'm sorry, it's outside the 7-day no-reason return window.",
                          "If there's a defect, though, we exchange items within 15 days of delivery — just send me a photo."])  # fmt: skip
    return [q, a1, q2, a2]


def as_exchange(g: G, lang: str) -> list[str]:
    p = g.c(CLOTHES + [P["slippers"]])
    if p.id == "cardigan" and g.p(0.5):
        colour, s1, s2 = ("炭灰", "Charcoal"), "L", "XL"
    else:
        i = g.n(0, len(p.sizes) - 2)
        s1, s2 = (p.sizes[i], p.sizes[i + 1]) if g.p(0.5) else (p.sizes[i + 1], p.sizes[i])
        colour = g.c(p.colours)
    bigger = p.sizes.index(s2) > p.sizes.index(s1)
    st, date = stock(p, colour[1], s2)
    o = g.order()
    n = talk(g, p, lang)
    if lang == "zh":
        feel = "小了" if bigger else "大了"
        q = u(
            g,
            lang,
            [
                f"{n}买了{s1}码，{feel}，想换{s2}",
                f"{n}{s1}码穿着{feel}点，可以换成{s2}码吗？",
                f"尺码不合适，{n}想换成{s2}码",
            ],
            "",
        )
        a1 = j(lang, [g.c(["可以的，", "没问题，", ""]), "签收7天内、吊牌完好都可以换尺码。", ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if st == "in":
            a2 = j(
                lang,
                [
                    f"订单{o}查到了，{colour[0]}{s2}码有货，可以换。",
                    f"请在订单页申请换货，把{s1}码寄回来（寄回运费由您承担），我们收到后24小时内寄出{s2}码，寄出运费我们出。",
                ],
            )
        else:
            a2 = j(
                lang,
                [
                    f"订单{o}查到了。",
                    f"抱歉，{colour[0]}{s2}码目前缺货，"
                    + (f"预计{zh_date(date)}补货。" if date else "暂时没有补货时间。"),
                    g.c(
                        [
                            "您可以等补货后再换，也可以换成其他颜色的同尺码，或者直接办理退货退款。",
                            "可以先帮您登记，补货后第一时间换给您；不想等的话也可以直接退货退款。",
                        ]
                    ),
                ],
            )
    else:
        feel = "too small" if bigger else "too big"
        q = u(g, lang, "", [f"The {n} in {s1} {'are' if plural(n) else 'is'} {feel}, can I swap {'them' if plural(n) else 'it'} for {s2}?",
                            f"I need to exchange my {n} from {s1} to {s2}.",
                            f"ordered {s1} in the {n}, {'they are' if plural(n) else 'it is'} {feel}. exchange for {s2}?"])  # fmt: skip
        a1 = j(
            lang,
            [
                g.c(["Of course.", "No problem.", ""]),
                "Size exchanges are fine within 7 days of delivery if the tags are still on.",
                ask_order(g, lang),
            ],
        )
        q2 = give_order(g, lang, o)
        if st == "in":
            a2 = j(lang, [f"Found order {o}, and {colour[1]} in {s2} is in stock.",
                          f"Please request the exchange on the order page and send the {s1} back (return postage is on you); "
                          f"we'll send the {s2} within 24 hours of receiving it, shipping on us."])  # fmt: skip
        else:
            a2 = j(
                lang,
                [
                    f"Found order {o}.",
                    f"I'm sorry, {colour[1]} in {s2} is sold out "
                    + (f"until about {en_date(date)}." if date else "with no restock date yet."),
                    "You can wait for the restock, pick another colour in the same size, or return it for a refund.",
                ],
            )
    return [q, a1, q2, a2]


def as_late(g: G, lang: str) -> list[str]:
    o = g.order()
    abroad = g.p(0.4 if lang == "en" else 0.15)
    d = g.n(3, 6) if not abroad else g.n(8, 14)
    country = g.c(COUNTRIES)
    city = g.c(ZH_CITIES)
    status = g.c(["hub", "out", "stuck"])
    if lang == "zh":
        if abroad:
            q = u(g, lang, [f"寄到{country[0]}的包裹{d}天了还没到", f"我在{country[0]}，等了{d}天了，快递到哪了？"], "")
        else:
            q = u(g, lang, [f"我的快递{d}天了还没到", f"下单{d}天了怎么还没收到？？", "东西到哪了，等好久了", "物流一直不动，怎么回事",
                            f"买的{talk(g, g.c(ALL), lang)}还没到，都{d}天了"], "")  # fmt: skip
        a1 = j(lang, [apology(g, lang, "late"), ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if abroad:
            a2 = j(
                lang,
                [
                    f"订单{o}已发出，目前在{country[0]}清关，国际快递一般5–10天送达，清关有时会多耽误几天。",
                    g.c(["我会持续帮您跟进，有更新第一时间通知您。", "再次抱歉，如果3天后还没有更新请再联系我。"]),
                ],
            )
        elif status == "hub":
            a2 = j(
                lang,
                [
                    f"订单{o}已经发出，包裹现在在{city}转运中心，预计明天送达。",
                    "正常2–4天能到，这次慢了一点，再次抱歉！",
                ],
            )
        elif status == "out":
            a2 = j(
                lang, [f"订单{o}的包裹今天已经在派送了，快递员会联系您。", "再次抱歉让您久等，今天没收到的话请再找我。"]
            )
        else:
            a2 = j(
                lang,
                [
                    f"订单{o}的物流确实停了两天没更新，非常抱歉。",
                    "我已经联系快递加急查件，24小时内给您回复；如果包裹丢了，我们会马上免费补发。",
                ],
            )
    else:
        if abroad:
            q = u(
                g,
                lang,
                "",
                [
                    f"My order to {country[1]} still hasn't arrived after {d} days.",
                    f"Where is my parcel? Shipping to {country[1]}, it's been {d} days",
                ],
            )
        else:
            q = u(g, lang, "", [f"My order still hasn't arrived, it's been {d} days.", "Where is my order??", "The tracking hasn't moved for ages, what's going on?",
                                f"ordered {d} days ago and nothing yet"])  # fmt: skip
        a1 = j(lang, [apology(g, lang, "late"), ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if abroad:
            a2 = j(lang, [f"Order {o} has shipped and is going through customs in {country[1]}; international delivery normally takes 5–10 days, "
                          "and customs can add a few more.", "I'll keep an eye on it and update you as soon as it moves."])  # fmt: skip
        elif status == "hub":
            a2 = j(
                lang,
                [
                    f"Order {o} is at the {g.c(EN_CITIES)} sorting hub and should be delivered tomorrow.",
                    "Delivery usually takes 2–4 days, so this one is running a little late — sorry again.",
                ],
            )
        elif status == "out":
            a2 = j(
                lang,
                [
                    f"Order {o} is out for delivery today, and the courier will contact you.",
                    "Sorry again for the wait; if it doesn't turn up today, message me.",
                ],
            )
        else:
            a2 = j(
                lang,
                [
                    f"You're right, the tracking for order {o} hasn't updated for two days — I'm sorry.",
                    "I've asked the courier to trace it and will get back to you within 24 hours; if it's lost, we'll resend it free of charge.",
                ],
            )
    return [q, a1, q2, a2]


def as_wrong(g: G, lang: str) -> list[str]:
    p = g.c([x for x in ALL if sum(stock(x, c[1])[0] in ("in", "low") for c in x.colours) > 1])
    want, got = g.sample([c for c in p.colours if stock(p, c[1])[0] in ("in", "low")], 2)  # both on the shelf
    o = g.order()
    n = talk(g, p, lang)
    missing = p.id == "bedding" and g.p(0.5)
    if lang == "zh":
        if missing:
            q = u(g, lang, ["四件套里少了一个枕套", "收到的四件套只有一个枕套，少发了吧"], "")
        else:
            q = u(
                g,
                lang,
                [
                    f"我买的是{want[0]}的{n}，发来的是{got[0]}",
                    f"颜色发错了！要的{want[0]}，收到{got[0]}",
                    f"{n}发错颜色了",
                ],
                "",
            )
        a1 = j(lang, [apology(g, lang), ask_order(g, lang, photo=not missing)])
        q2 = give_order(g, lang, o)
        if missing:
            a2 = j(lang, [f"核实了，订单{o}确实漏发了一个枕套，非常抱歉。", "今天就给您补发，免运费，2–4天能到。"])
        else:
            a2 = j(
                lang,
                [
                    f"订单{o}核实了，是我们把{want[0]}发成了{got[0]}，非常抱歉。",
                    f"正确的{want[0]}{p.zh}今天给您寄出，发错的那{p.unit}由快递上门取回，运费都由我们承担。",
                ],
            )
    else:
        if missing:
            q = u(
                g,
                lang,
                "",
                ["My bedding set came with only one pillowcase.", "There's a pillowcase missing from my bedding set"],
            )
        else:
            q = u(g, lang, "", [f"I ordered the {n} in {want[1]} but got {got[1]}.", f"Wrong colour! I wanted {want[1]}, you sent {got[1]}",
                                f"You sent the wrong colour {n}"])  # fmt: skip
        a1 = j(lang, [apology(g, lang), ask_order(g, lang, photo=not missing)])
        q2 = give_order(g, lang, o)
        if missing:
            a2 = j(
                lang,
                [
                    f"I've checked order {o} and the pillowcase was indeed left out — sorry about that.",
                    "We'll send it today at no cost, and it should arrive in 2–4 days.",
                ],
            )
        else:
            a2 = j(
                lang,
                [
                    f"I've checked order {o}: we sent the wrong colour, and I'm sorry.",
                    f"The {p.en} in {want[1]} {verb(p, 'goes')} out today, and a courier will collect the wrong one — no shipping costs for you.",
                ],
            )
    return [q, a1, q2, a2]


def as_refund(g: G, lang: str) -> list[str]:
    o = g.order()
    pay = g.c(PAY)
    state = g.c(["issued", "waiting", "late"])
    if lang == "zh":
        q = u(
            g,
            lang,
            [
                "退款什么时候到账？",
                "我退货寄回去了，钱还没退",
                "退款怎么还没到？",
                "退的钱到哪了",
                "退货都寄回好几天了还没退款",
            ],
            "",
        )
        a1 = j(lang, [g.c(["抱歉让您久等了！", "让您着急了，抱歉！"]) if "没" in q else "", ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if state == "issued":
            a2 = j(
                lang, [f"订单{o}的退货仓库昨天已经收到，退款已原路退回您的{pay[0]}，", "3个工作日内到账，请留意一下。"]
            )
        elif state == "waiting":
            a2 = j(
                lang,
                [f"订单{o}的退货包裹还在路上，仓库还没签收。", "收到后我们会在3个工作日内原路退款，到时会有短信通知。"],
            )
        else:
            a2 = j(
                lang,
                [
                    f"查到了，订单{o}的退货仓库上周就收到了，退款确实超时了，非常抱歉。",
                    f"我已经加急处理，今天会退回到您的{pay[0]}。",
                ],
            )
    else:
        q = u(g, lang, "", ["When will I get my refund?", "I sent my return back but still no refund", "Where is my refund?",
                            "how long do refunds take"])  # fmt: skip
        a1 = j(
            lang,
            [
                g.c(["Sorry for the wait!", "I'm sorry it's taking a while."])
                if "no refund" in q.lower() or "where" in q.lower()
                else "",
                ask_order(g, lang),
            ],
        )
        q2 = give_order(g, lang, o)
        if state == "issued":
            a2 = j(
                lang,
                [
                    f"Our warehouse received the return for order {o} yesterday, and the refund has gone back to your {pay[1]}.",
                    "It should show up within 3 business days.",
                ],
            )
        elif state == "waiting":
            a2 = j(
                lang,
                [
                    f"The return for order {o} is still on its way to us.",
                    "Once it arrives we refund to your original payment method within 3 business days.",
                ],
            )
        else:
            a2 = j(
                lang,
                [
                    f"I see the return for order {o} reached us last week, so the refund is overdue — I'm sorry.",
                    f"I've escalated it and it will be sent back to your {pay[1]} today.",
                ],
            )
    return [q, a1, q2, a2]


def as_cancel(g: G, lang: str) -> list[str]:
    o = g.order()
    shipped = g.p(0.35)
    if lang == "zh":
        q = u(
            g,
            lang,
            ["刚下的单能取消吗？", "拍错了，想取消订单", "订单不要了，帮我取消一下", "下单后后悔了，可以取消吗"],
            "",
        )
        a1 = j(lang, [g.c(["好的。", "别着急，", ""]), ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if shipped:
            a2 = j(
                lang,
                [
                    f"订单{o}已经发货了，没办法直接取消。",
                    "您可以拒收，或者签收后7天内申请无理由退货，我们收到退货后3个工作日内退款。",
                ],
            )
        else:
            a2 = j(lang, [f"订单{o}还没发货，已经帮您取消了。", "款项会在3个工作日内原路退回。"])
    else:
        q = u(
            g,
            lang,
            "",
            [
                "Can I cancel the order I just placed?",
                "I need to cancel my order please",
                "ordered by mistake, cancel pls",
            ],
        )
        a1 = j(lang, [g.c(["Let me check.", "Sure.", ""]), ask_order(g, lang)])
        q2 = give_order(g, lang, o)
        if shipped:
            a2 = j(
                lang,
                [
                    f"Order {o} has already shipped, so I can't cancel it.",
                    "You can refuse the delivery, or return it within 7 days of delivery; the refund follows within 3 business days of the return reaching us.",
                ],
            )
        else:
            a2 = j(
                lang,
                [
                    f"Order {o} hadn't shipped yet, so I've cancelled it.",
                    "Your refund goes back to the original payment method within 3 business days.",
                ],
            )
    return [q, a1, q2, a2]


def as_address(g: G, lang: str) -> list[str]:
    o = g.order()
    shipped = g.p(0.3)
    if lang == "zh":
        q = u(g, lang, ["地址填错了，能改吗？", "收货地址写错了一个字", "想改一下收货地址", "电话号码填错了怎么办"], "")
        a1 = g.c(["别着急，麻烦把订单号和正确的地址或电话发我，我马上帮您改。", "好的，请发一下订单号（LL开头加8位数字）和正确的信息，我帮您看看还能不能改。",
                  "请把订单号和正确的收货信息发给我，没发货的话马上就能改。"])  # fmt: skip
        q2 = give_order(
            g, lang, o, g.c(["新地址是" + g.c(ZH_CITIES) + "市滨江路18号", "电话改成138****6621", "地址改成单位的"])
        )
        if shipped:
            a2 = j(
                lang,
                [
                    f"订单{o}已经发货了，我这边已联系快递帮您改地址，改好后会短信通知您。",
                    "如果快递改不了，您也可以拒收，我们收到退回后重新给您寄。",
                ],
            )
        else:
            a2 = j(lang, [f"订单{o}还没发货，已经帮您改好了，24小时内按新信息发出。"])
    else:
        q = u(
            g,
            lang,
            "",
            [
                "I put the wrong address on my order",
                "Can I change my delivery address?",
                "Typo in my phone number on the order",
            ],
        )
        a1 = g.c(["No problem — please send your order number and the correct details, and I'll update it.",
                  "Let's fix that. What's your order number, and what should the details be?",
                  "Could you share your order number (LL followed by 8 digits) and the correct address or phone number?"])  # fmt: skip
        q2 = give_order(
            g,
            lang,
            o,
            g.c(["New address: 18 Binjiang Rd", "Phone should end in 6621", "Apartment number is 1203, not 1302"]),
        )
        if shipped:
            a2 = j(
                lang,
                [
                    f"Order {o} has already shipped, so I've asked the courier to update the details and you'll get a text when it's done.",
                    "If they can't, you can refuse the parcel and we'll resend it once it comes back.",
                ],
            )
        else:
            a2 = j(lang, [f"Order {o} hasn't shipped yet, so I've updated it; it will go out within 24 hours."])
    return [q, a1, q2, a2]


def as_policy(g: G, lang: str) -> list[str]:
    """A policy question: answer it, ask for the order number, and (sometimes) act on it once given."""
    zh = [
        (
            ["退货运费谁出？", "退货要我出运费吗"],
            "无理由退货的寄回运费由您承担；如果是质量问题，来回运费都由我们承担。",
            "想退一件，不是质量问题",
            "订单{o}还在7天无理由退货期内，已帮您提交退货申请，寄回运费由您承担，收到退货后3个工作日内原路退款。",
        ),
        (
            ["退款退到哪里？", "退款是退到微信吗"],
            "退款会原路退回您付款的账户，我们收到退货后3个工作日内处理完成。",
            "退货昨天寄出了",
            "订单{o}的退货包裹在路上了，仓库签收后3个工作日内会原路退回到您付款的账户。",
        ),
        (
            ["质量问题多久内可以换？", "有瑕疵能换吗，期限多久"],
            "有质量问题的商品，签收15天内可以免费换货，运费由我们承担。",
            "上周收到的，袖口开线了",
            "订单{o}还在15天质量问题换货期内，抱歉给您添麻烦了！已为您登记免费换新，快递员会上门取件。",
        ),
        (
            ["几天内可以退货？", "退货期限是多久"],
            "签收后7天内可以无理由退货，商品需未使用、吊牌完好；有质量问题的签收15天内可以免费换货。",
            "前天刚收到",
            "订单{o}是前天签收的，还在7天无理由退货期内，您在订单页提交退货申请就可以了。",
        ),
        (
            ["能开发票吗？", "需要开公司抬头的发票"],
            "可以开电子发票，抬头和税号填好后会发到您的邮箱。",
            "抬头：杭州某某科技有限公司",
            "订单{o}的电子发票已经申请好了，开出后会发到您下单时填写的邮箱。",
        ),
        (
            ["拆了包装还能退吗", "吊牌剪了还能退吗"],
            "7天无理由退货需要商品未使用、吊牌完好；包装拆开不影响，但吊牌剪了就不能无理由退了，质量问题除外。",
            "吊牌还在，就是拆了包装",
            "订单{o}吊牌完好，可以办理7天无理由退货，已帮您提交申请，收到退货后3个工作日内退款。",
        ),
    ]
    en = [
        (["Who pays for return shipping?", "Do I have to pay to send a return back?"],
         "For no-reason returns the return shipping is on you; if the item is faulty, we cover shipping both ways.",
         "Nothing's wrong with it, I just don't want it", "Order {o} is within the 7-day no-reason return window, so I've opened the "
         "return; the postage back is on you, and the refund follows within 3 business days of it reaching us."),
        (["Where does my refund go?", "How will I be refunded?"],
         "Refunds go back to your original payment method within 3 business days of your return reaching us.",
         "I posted the return yesterday", "The return for order {o} is on its way; once our warehouse receives it, the refund goes "
         "back to your original payment method within 3 business days."),
        (["How long do I have to report a defect?", "What's your warranty on faulty items?"],
         "Faulty items can be exchanged free of charge within 15 days of delivery, and we pay the shipping.",
         "Got it last week and a seam has split", "Sorry about the seam! Order {o} is within the 15-day defect window, so I've "
         "arranged a free replacement and a courier will collect the faulty one."),
        (["What's your return policy?", "How many days do I have to return something?"],
         "You can return unused items with tags on within 7 days of delivery, no reason needed; defects are covered for 15 days.",
         "It arrived two days ago", "Order {o} arrived two days ago, so you're within the 7-day return window — start the return "
         "from the order page whenever you're ready."),
        (["Can I get an invoice?", "I need a VAT invoice for my order"], "Yes, we issue e-invoices and email them to you.",
         "Company name is Brightside Ltd", "I've requested the e-invoice for order {o}; it will be emailed to the address on the order."),
    ]  # fmt: skip
    qs, ans, extra, res = g.c(zh if lang == "zh" else en)
    q = u(g, lang, qs, qs)
    if lang == "zh":
        tail = g.c(
            [
                "方便提供一下订单号吗？我帮您直接办理。",
                "您有具体要处理的订单吗？发我订单号就行。",
                "把订单号发我，我帮您看一下具体情况。",
            ]
        )
    else:
        tail = g.c(["If you'd like me to start one, just send your order number.", "Is there an order you'd like me to check? "
                    "Please share the order number.", "Send me your order number and I'll take care of it."])  # fmt: skip
    turns = [q, j(lang, [hi(g, lang), ans, tail])]
    if g.p(0.5):
        o = g.order()
        turns += [give_order(g, lang, o, extra), res.format(o=o)]
    return turns


def as_upfront(g: G, lang: str) -> list[str]:
    """The customer gives the order number straight away."""
    p = g.c(ALL)
    dz, de = g.c(DEFECTS[p.id])
    o = g.order()
    if lang == "zh":
        q = u(
            g,
            lang,
            [
                f"订单号{o}，{talk(g, p, lang)}{dz}",
                f"{o} 这单的{talk(g, p, lang)}{dz}，怎么处理",
                f"我的订单{o}，收到的{talk(g, p, lang)}{dz}",
            ],
            "",
        )
        a = j(
            lang,
            [
                apology(g, lang),
                f"订单{o}我查到了，签收15天内的质量问题可以免费换新或退款，来回运费由我们承担。",
                g.c(["麻烦拍张照片发我，我马上安排上门取件。", "您发张照片给我，我这边马上处理。"]),
            ],
        )
    else:
        q = u(
            g,
            lang,
            "",
            [
                f"Order {o}: my {talk(g, p, lang)} arrived and {de}.",
                f"About order {o}: the {talk(g, p, lang)} — {de}.",
                f"{o} — {de}. Help?",
            ],
        )
        a = j(lang, [apology(g, lang), f"I've found order {o}. Defects are covered for 15 days from delivery: a free replacement or a full refund, with shipping on us.",
                     "Could you send a photo? Then I'll arrange the pickup."])  # fmt: skip
    turns = [q, a]
    if g.p(0.4):
        if lang == "zh":
            turns += [u(g, lang, ["退款的话多久到账？", "那退款要多久？", "换新的话几天能收到"], "", False)]
            if "换" in turns[-1]:
                turns.append(f"订单{o}的新货会在收到照片后24小时内寄出，一般2–4天送达。")
            else:
                turns.append(f"订单{o}的退货到仓后3个工作日内原路退款。")
        else:
            turns += [
                u(g, lang, "", ["How long would the refund take?", "And how soon would a replacement arrive?"], False)
            ]
            if "replacement" in turns[-1]:
                turns.append(
                    f"For order {o}, the replacement ships within 24 hours of your photo and usually arrives in 2–4 days."
                )
            else:
                turns.append(
                    f"For order {o}, the refund reaches your original payment method within 3 business days of the return arriving."
                )
    return turns


def as_noorder(g: G, lang: str) -> list[str]:
    o = g.order()
    if lang == "zh":
        q = u(g, lang, ["我想退货，但是不知道订单号", "订单号在哪里看？", "我找不到订单号怎么办"], "")
        a1 = j(
            lang,
            [
                g.c(["别担心，", ""]),
                "订单号在App或网站的“我的订单”里，下单成功的短信和邮件里也有，是LL开头加8位数字（例如LL20261234）。找到后发给我，我马上帮您处理。",
            ],
        )
        q2 = give_order(g, lang, o, g.c(["找到了", "想退一条浴巾", "是这个吧"]))
        a2 = j(lang, [f"对的，订单{o}查到了，", g.c(["签收还在7天无理由退货期内，请在订单页提交退货申请，收到退货后3个工作日内原路退款。",
                                                  "请告诉我需要处理的问题，我帮您办理。"])])  # fmt: skip
    else:
        q = u(
            g,
            lang,
            "",
            ["I want to return something but I don't have the order number", "Where do I find my order number?"],
        )
        a1 = "No worries — your order number is under My Orders on our website or app and in your confirmation email. It starts with LL followed by 8 digits (e.g. LL20261234). Send it over and I'll help."
        q2 = give_order(g, lang, o, g.c(["Found it", "It's for a towel", ""]))
        a2 = j(lang, [f"Great, I've found order {o}.", g.c(["It's still within the 7-day no-reason return window, so you can start the return on the order page; "
                                                              "the refund follows within 3 business days of the item reaching us.", "What would you like me to do with it?"])])  # fmt: skip
    return [q, a1, q2, a2]


def as_badformat(g: G, lang: str) -> list[str]:
    o = g.order()
    bad = o[2:] if g.p(0.5) else o[:-1]
    if lang == "zh":
        q = u(g, lang, [f"我要查订单{bad}", f"订单{bad}到哪了", f"{bad}这个单子帮我看下"], "")
        a1 = f"订单号是LL开头加8位数字，您发的“{bad}”好像不完整，麻烦再核对一下订单号？"
        q2 = give_order(g, lang, o, g.c(["", "刚才漏了", "不好意思"]))
        a2 = j(lang, [f"查到了，订单{o}已经发货，", g.c(["预计2–4天送达。", "目前在运输途中，明天就能到。"])])
    else:
        q = u(g, lang, "", [f"Can you check order {bad}?", f"Where's my order {bad}", f"status of {bad} please"])
        a1 = f'Order numbers are LL followed by 8 digits, and "{bad}" looks incomplete — could you double-check the order number?'
        q2 = give_order(g, lang, o, g.c(["", "Sorry, missed that", "my bad"]))
        a2 = j(
            lang, [f"Found it: order {o} has shipped", g.c(["and should arrive in 2–4 days.", "and is due tomorrow."])]
        )
    return [q, a1, q2, a2]


def as_vague(g: G, lang: str) -> list[str]:
    """An upset customer who hasn't said what went wrong yet."""
    o = g.order()
    p = g.c(ALL)
    dz, de = g.c(DEFECTS[p.id])
    if lang == "zh":
        q = u(
            g,
            lang,
            ["你们这什么破服务！！", "我要投诉！", "太失望了，东西有问题", "给个说法吧，买的东西质量太差了"],
            "",
            False,
        )
        a1 = j(lang, [apology(g, lang), "能跟我说说遇到了什么问题吗？麻烦附上订单号，我马上帮您处理。"])
        q2 = give_order(g, lang, o, f"{talk(g, p, lang)}{dz}")
        a2 = j(
            lang,
            [
                f"订单{o}我查到了，再次抱歉！",
                "签收15天内的质量问题，我们免费换新或退款，来回运费由我们承担，您发张照片给我就能马上安排。",
            ],
        )
    else:
        q = u(
            g,
            lang,
            "",
            [
                "This is ridiculous.",
                "I want to make a complaint.",
                "Very disappointed with my order.",
                "Terrible quality, honestly.",
            ],
            False,
        )
        a1 = j(
            lang,
            [
                apology(g, lang),
                "Could you tell me what happened and share your order number? I'll sort it out right away.",
            ],
        )
        q2 = give_order(g, lang, o, f"My {talk(g, p, lang)}: {de}")
        a2 = j(
            lang,
            [
                f"Thank you — I've found order {o}, and I'm sorry again.",
                "Defects are covered for 15 days from delivery with a free replacement or refund and shipping on us; send me a photo and I'll arrange it now.",
            ],
        )
    return [q, a1, q2, a2]


AS_TABLE = [(as_defect, 4), (as_return, 4), (as_exchange, 3), (as_late, 3), (as_wrong, 2), (as_refund, 2), (as_cancel, 2),
            (as_address, 1), (as_policy, 3), (as_upfront, 2), (as_noorder, 1), (as_badformat, 1), (as_vague, 1)]  # fmt: skip


def aftersales(g: G, lang: str) -> list[str]:
    turns = weighted(g, AS_TABLE)(g, lang)
    if len(turns) == 4 and g.p(0.2):  # a short follow-up: thanks / one more question
        o = rubric.ORDER_RE.search(turns[-1]).group(0).upper()
        if lang == "zh":
            turns += [u(g, lang, ["好的谢谢", "行吧，那就这样", "好，辛苦了"], "", False),
                      g.c([f"不客气，订单{o}有任何进展我们会短信通知您。", f"不客气！订单{o}后续有问题随时找我。"])]  # fmt: skip
        else:
            turns += [u(g, lang, "", ["ok thanks", "Great, thank you!", "Fine, thanks."], False),
                      g.c([f"You're welcome! We'll email you about any update on order {o}.", f"You're welcome — message me any time about order {o}."])]  # fmt: skip
    return turns


# --------------------------------------------------------------------------------------------------------
# 营销 marketing
# --------------------------------------------------------------------------------------------------------
def mk_whats_on(g: G, lang: str) -> list[str]:
    q = u(g, lang, ["最近有什么活动吗？", "现在有优惠吗", "有没有打折", "双十二你们有活动吗？", "最近买划算吗", "有什么福利吗", "有优惠券吗？"],
          ["Are there any deals right now?", "Any sales on at the moment?", "Do you have a Black Friday sale?", "Is anything on discount?",
           "what promotions do you have", "Got any coupon codes?"])  # fmt: skip
    parts = [hi(g, lang), promo(g, lang), coupon_rule(g, lang)]
    if g.p(0.6):
        parts.append(bundle_rule(g, lang, also=True))
    if g.p(0.3):
        parts.append(
            "活动期间还免费提供礼品包装。" if lang == "zh" else "Gift wrapping is free during the festival, too."
        )
    return [q, j(lang, parts)]


def mk_coupon_how(g: G, lang: str) -> list[str]:
    q = u(g, lang, ["WARM30怎么用？", "优惠券在哪里领", "券码在哪输入", "WARM30是满多少能用", "优惠码怎么用啊", "满减券要怎么领",
                    "WARM30要满多少才能用", "活动券在哪里填", "WARM30需要先领取吗"],
          ["How do I use WARM30?", "Where do I enter the coupon code?", "What's the minimum spend for WARM30?",
           "how does the warm30 code work", "Do I need to claim WARM30 somewhere?", "minimum order for the coupon?",
           "Where does the discount code go?"])  # fmt: skip
    if lang == "zh":
        a = [
            hi(g, lang),
            "不用领券，结算页的“优惠券”一栏输入WARM30就行：订单满¥299减¥30，每单限用一张，不能和其他优惠券叠加。",
            promo(g, lang, short=True),
        ]
    else:
        a = [hi(g, lang), "No need to claim it: type WARM30 in the coupon field at checkout to get ¥30 off orders over ¥299. It's one per order and doesn't stack with other coupons.",
             promo(g, lang, short=True)]  # fmt: skip
    return [q, j(lang, a)]


def listing(words: list[str], lang: str) -> str:
    if len(words) == 1:
        return words[0]
    if lang == "zh":
        return "、".join(words[:-1]) + "和" + words[-1]
    return ", ".join(words[:-1]) + (", and " if len(words) > 2 else " and ") + words[-1]


def cart_text(items: list[Product], lang: str) -> str:
    if lang == "zh":
        return listing([f"{p.zh}" if len(items) == 1 else f"一{p.unit}{p.zh}" for p in items], lang)
    return listing([f"the {p.en}" for p in items], lang)


def mk_cart(g: G, lang: str) -> list[str]:
    k = g.c([1, 1, 2, 2, 3])
    items = g.sample(ALL, k)
    t = sum(p.price for p in items)
    talk_items = listing([talk(g, p, lang) for p in items], lang)
    together = "一起买用券多少钱" if k > 1 else "用券后多少钱"
    q = u(g, lang, [f"我想买{talk_items}，能用WARM30吗？", f"买{talk_items}能优惠多少", f"{talk_items}{together}", f"购物车里是{talk_items}，怎么买最划算"],
          [f"I'm getting the {talk_items}. Does WARM30 work?", f"How much would the {talk_items} be with the coupon?", f"Can I use the code on the {talk_items}?"])  # fmt: skip
    if lang == "zh":
        a = [hi(g, lang)]
        if t >= 299:
            a.append(
                f"{cart_text(items, lang)}{'合计' if k > 1 else ''}¥{t}，满¥299可以用WARM30减¥30，实付¥{t - 30}，而且满¥199包邮。"
            )
        else:
            add = next(c for c in sorted(ALL, key=lambda x: x.price) if c not in items and t + c.price >= 299)
            a.append(
                f"{cart_text(items, lang)}{'合计' if k > 1 else ''}¥{t}，还差¥{299 - t}才能用WARM30（满¥299减¥30）。"
            )
            a.append(
                f"可以考虑加一{add.unit}{add.zh}（¥{add.price}），合计¥{t + add.price}，用券后¥{t + add.price - 30}。"
            )
        a.append(promo(g, lang, short=True))
    else:
        a = [hi(g, lang)]
        if t >= 299:
            a.append(
                f"{cart_text(items, lang)[0].upper() + cart_text(items, lang)[1:]} come{'s' if k == 1 and not plural(items[0].en) else ''} to ¥{t}, so WARM30 takes off ¥30 and you'd pay ¥{t - 30}, with free shipping too."
            )
        else:
            add = next(c for c in sorted(ALL, key=lambda x: x.price) if c not in items and t + c.price >= 299)
            a.append(
                f"{cart_text(items, lang)[0].upper() + cart_text(items, lang)[1:]} come{'s' if k == 1 and not plural(items[0].en) else ''} to ¥{t}, which is ¥{299 - t} short of the ¥299 minimum for WARM30."
            )
            a.append(
                f"Adding the {add.en} (¥{add.price}) brings it to ¥{t + add.price}, or ¥{t + add.price - 30} after the coupon."
            )
        a.append(promo(g, lang, short=True))
    return [q, j(lang, a)]


def mk_stack(g: G, lang: str) -> list[str]:
    which = g.c(["new", "bundle", "two"])
    if which == "new":
        q = u(g, lang, ["WARM30能和新人券一起用吗？", "HELLO15和WARM30可以叠加吗", "新人券跟活动券能同时用吗", "我有新人券，还能再用WARM30吗",
                        "两张券能一起用不", "新客券和满减券可以叠加使用吗"],
              ["Can I use WARM30 together with HELLO15?", "Do the new-customer coupon and WARM30 stack?",
               "I have HELLO15, can I add WARM30 as well?", "Can I combine two coupons?",
               "is it possible to use hello15 and warm30 on one order"])  # fmt: skip
        za = "不能叠加哦，每单只能用一张优惠券。订单满¥299的话用WARM30（减¥30）更划算，不满¥299可以用新人券HELLO15（减¥15）。"
        ea = "They don't stack — one coupon per order. If your order is over ¥299, WARM30 (¥30 off) is the better deal; below that, use HELLO15 for ¥15 off."
    elif which == "bundle":
        q = u(g, lang, ["暖居组合能用WARM30吗？", "买组合还能再用券吗", "组合价还能叠加优惠券吗", "组合再用满减券是多少钱", "买暖居组合用券后多少钱"],
              ["Can I use WARM30 on the Cosy Corner Bundle?", "does the bundle work with the coupon?",
               "How much is the bundle after the coupon?", "Does WARM30 apply to the bundle price?"])  # fmt: skip
        za = f"可以的，{BUNDLE_ZH}组合价¥499，已经满¥299，再用WARM30减¥30，实付¥469，还包邮。"
        ea = f"Yes, the {BUNDLE_EN} is ¥499, which is over ¥299, so WARM30 brings it to ¥469, and shipping is free."
    else:
        q = u(
            g,
            lang,
            ["两张WARM30能一起用吗", "我买了600多，能用两次WARM30吗？", "WARM30一单能用几张", "大额订单能多用几张券吗"],
            [
                "Can I use WARM30 twice on a big order?",
                "can i stack two warm30 codes",
                "How many WARM30 codes per order?",
            ],
        )
        za = "WARM30每单限用一张，金额再高也只减¥30。如果想多用一次，可以分成两个都满¥299的订单分别用券。"
        ea = "WARM30 is one per order, so a big order still gets ¥30 off; splitting it into two orders of ¥299 or more lets you use it on each."
    return [q, j(lang, [hi(g, lang), za if lang == "zh" else ea, promo(g, lang, short=True)])]


def mk_bundle(g: G, lang: str) -> list[str]:
    q = u(g, lang, [f"{BUNDLE_ZH}包含什么？", "组合优惠是什么", "盖毯和抱枕套一起买有优惠吗", "组合里的颜色能自己选吗", "暖居组合划算吗",
                    "组合里的盖毯有哪些颜色", "组合的抱枕套能选不同颜色吗", "那个组合套餐是什么"],
          [f"What's in the {BUNDLE_EN}?", "Tell me about the bundle offer", "Is there a deal on the throw with cushion covers?",
           "Can I pick colours in the bundle?", "Is the bundle worth it?", "Which throw colours are in the bundle?",
           "What do I get in the bundle?"])  # fmt: skip
    if lang == "zh":
        a = [
            hi(g, lang),
            bundle_rule(g, lang),
            "盖毯可选燕麦色或格纹（焦糖色暂时缺货，预计12月8日补货），抱枕套四个颜色任选。",
            promo(g, lang, short=True),
        ]
    else:
        a = [
            hi(g, lang),
            bundle_rule(g, lang),
            "The throw comes in Oat or Check (Caramel is back around December 8) and the covers in any of four colours.",
            promo(g, lang, short=True),
        ]
    return [q, j(lang, a)]


def mk_deadline(g: G, lang: str) -> list[str]:
    day = g.c([12, 15, 18, 19, 21, 22, 25])
    q = u(g, lang, ["活动到什么时候？", f"12月{day}号下单还能用券吗", "WARM30什么时候过期", "冬日暖居节几号结束？", "活动还有几天",
                    f"{day}号还有优惠吗", "优惠券有效期到哪天", f"我想{day}号发工资再买，还来得及吗"],
          ["When does the sale end?", f"Will WARM30 still work on December {day}?", "how long is the festival on",
           "When does WARM30 expire?", "Last day of the promotion?", f"Is the coupon still valid on Dec {day}?",
           f"I get paid on the {day}{ {21: 'st', 22: 'nd'}.get(day, 'th') }, will the sale still be on?"])  # fmt: skip
    late = str(day) in q and day > 20
    early = str(day) in q and day <= 20
    if lang == "zh":
        a = [hi(g, lang), f"{PROMO_ZH}到2026年12月20日23:59截止，WARM30也是同一天到期。"]
        if late:
            a.append(f"12月{day}日活动已经结束了，建议在20日之前下单。")
        elif early:
            a.append(f"12月{day}日还在活动期内，可以正常用券。")
    else:
        a = [hi(g, lang), f"The {PROMO_EN} ends on December 20 at 23:59 Beijing time, and WARM30 expires with it."]
        if late:
            a.append(f"By December {day} it will be over, so I'd order before the 20th.")
        elif early:
            a.append(f"December {day} is still inside the festival, so the code will work.")
    return [q, j(lang, a)]


def mk_gift(g: G, lang: str) -> list[str]:
    p = g.c([P["scarf"], P["cardigan"], P["throw"], P["robe"], P["bedding"], P["duvet"]])
    who = g.c(
        [
            ("妈妈", "my mum"),
            ("女朋友", "my girlfriend"),
            ("爸爸", "my dad"),
            ("闺蜜", "my best friend"),
            ("老师", "my teacher"),
            ("同事", "a colleague"),
        ]
    )
    if lang == "zh":
        q = u(
            g,
            lang,
            [f"想给{who[0]}买个圣诞礼物，有什么推荐，顺便问下有没有优惠", f"送{who[0]}礼物，现在买什么划算？"],
            "",
        )
        a = [
            hi(g, lang),
            f"推荐{p.zh}（¥{p.price}），{p.pitch[0]}。",
            f"正好赶上{PROMO_ZH}（12月20日截止），用WARM30减¥30，实付¥{p.price - 30}，还能免费礼品包装。",
        ]
    else:
        q = u(
            g,
            lang,
            "",
            [
                f"Looking for a Christmas gift for {who[1]} — anything on offer?",
                f"Gift ideas for {who[1]}? Any discounts at the moment?",
            ],
        )
        a = [
            hi(g, lang),
            f"The {p.en} (¥{p.price}) makes a lovely gift: {p.pitch[1]}.",
            f"With the {PROMO_EN} on until December 20, WARM30 brings it to ¥{p.price - 30}, and gift wrapping is free.",
        ]
    return [q, j(lang, a)]


def mk_copy(g: G, lang: str) -> list[str]:
    """Staff ask for promotional copy in the brand voice."""
    p = g.c([P["throw"], P["cardigan"], P["scarf"], P["bedding"], P["flannel"], P["duvet"]])
    if lang == "zh":
        product = g.p(0.3)
        if product:
            q = u(g, lang, [f"帮我写个推{p.zh}的小文案", f"给{p.zh}写一句宣传语", f"写两句话推荐一下{p.zh}"], "", False)
            line = g.c([f"{p.zh}，{p.pitch[0]}，给冬夜多一点暖意。{PROMO_ZH}期间用WARM30满¥299减¥30，12月20日截止。",
                        f"这个冬天，从一{p.unit}{p.zh}开始：{p.pitch[0]}。{PROMO_ZH}进行中，满299减30（WARM30），至12月20日。"])  # fmt: skip
        else:
            q = u(g, lang, ["帮我写一条朋友圈文案，宣传冬日暖居节", "写一句店铺首页的活动标语", "写一条短信通知老客户活动开始了",
                            "给公众号写个活动开头，两三句就行", "写个活动海报上的标题"], "", False)  # fmt: skip
            line = g.c([f"天冷了，把家布置得软一点。{PROMO_ZH}进行中，满¥299减¥30（券码WARM30），12月20日截止。",
                        f"【栖光织物】{PROMO_ZH}开始啦：全场满299减30，券码WARM30，{BUNDLE_ZH}只要¥499。活动到12月20日，慢慢挑，别错过。",
                        f"慢一点，暖一点。{PROMO_ZH}至12月20日，满299减30，礼品包装免费。",
                        f"把冬天过成软的。{PROMO_ZH}，WARM30满299减30，12月20日截止。"])  # fmt: skip
        a = g.c(["可以这样写：", "给您一版：", "试试这条：", ""]) + "“" + line + "”"
    else:
        if g.p(0.3):
            q = u(
                g,
                lang,
                "",
                [f"Write two sentences promoting the {p.en}", f"Need a short product blurb for the {p.en}"],
                False,
            )
            line = g.c([f"Meet the {p.en}: {p.pitch[1]}. Save ¥30 on orders over ¥299 with WARM30 during the {PROMO_EN}, ending December 20.",
                        f"Winter evenings, sorted: the {p.en}, ¥{p.price}. Use WARM30 for ¥30 off orders over ¥299 until December 20, "
                        f"the last day of the {PROMO_EN}."])  # fmt: skip
        else:
            q = u(g, lang, "", ["Write a short Instagram caption for our winter sale", "Draft a one-line email subject for the festival",
                                "Can you write a push notification for the promotion?", "Give me a banner headline for the homepage"], False)  # fmt: skip
            line = g.c([f"Soft, warm and ready for winter: the {PROMO_EN} is on — ¥30 off orders over ¥299 with WARM30, until December 20.",
                        f"Make home the warmest place you know. {PROMO_EN}: code WARM30, ¥30 off orders over ¥299, ends Dec 20.",
                        f"Slow down, warm up. The {PROMO_EN} runs until December 20 — free gift wrapping and ¥30 off with WARM30."])  # fmt: skip
        a = g.c(["Here's one: ", "How about: ", "Try this: ", ""]) + '"' + line + '"'
    return [q, a]


def mk_brand(g: G, lang: str) -> list[str]:
    q = u(g, lang, ["你们品牌是什么风格？", "栖光织物是做什么的", "你们家东西有什么特点", "Lumen & Loom是什么意思"],
          ["What's your brand about?", "What does Lumen & Loom stand for?", "what kind of shop are you", "Tell me about your style"])  # fmt: skip
    meaning = "意思" in q or "stand for" in q.lower()
    if lang == "zh":
        a = [
            hi(g, lang),
            "Lumen是光，Loom是织机，中文名叫栖光织物：在柔和的光里织一个让人想停留的家。" if meaning else "",
            "栖光织物是做衣物和家纺的网店，偏爱羊毛、亚麻、棉这些天然材质，颜色柔和，想让家里多一点安静和温暖。",
            promo(g, lang),
        ]
        if g.p(0.5):
            a.append("推荐看看羊毛盖毯（¥459）和云朵羊毛开衫（¥399），都是这季很受欢迎的。")
    else:
        a = [
            hi(g, lang),
            "Lumen means light and a loom is where cloth is woven: soft light and good fabric for a home you want to linger in."
            if meaning
            else "",
            "Lumen & Loom makes clothing and home textiles in natural materials like wool, linen and cotton, in soft colours, for a calm and cosy home.",
            promo(g, lang),
        ]
        if g.p(0.5):
            a.append("The Wool Throw (¥459) and the Cloud Wool Cardigan (¥399) are this season's favourites.")
    return [q, j(lang, a)]


def mk_fail(g: G, lang: str) -> list[str]:
    why = g.c(["under", "other", "typo"])
    t = g.n(150, 298)
    if lang == "zh":
        q = u(
            g,
            lang,
            [
                "WARM30用不了，提示不满足条件",
                "优惠码输进去没反应",
                f"我订单{t}块，WARM30为什么不能用",
                "券码无效是怎么回事",
                "用券提示不能叠加",
                "WARM30显示已失效？",
                "优惠券怎么减不了",
            ],
            "",
        )
        if "块" in q:
            why = "under"
        elif "叠加" in q:
            why = "other"
        a = [hi(g, lang) or "别着急，"]
        a.append({"under": f"WARM30需要订单满¥299才能用{'，您现在是¥' + str(t) + '，还差¥' + str(299 - t) if '块' in q else ''}，可以再加一件凑单。",
                  "other": "看一下是不是已经用了其他优惠券（比如新人券HELLO15），WARM30不能和其他券叠加，取消那张再输入就好。",
                  "typo": "请确认输入的是WARM30（全大写、没有空格），另外订单需要满¥299。"}[why])  # fmt: skip
        a.append(promo(g, lang, short=True))
    else:
        q = u(
            g,
            lang,
            "",
            [
                "WARM30 isn't working",
                "The coupon says it's not valid",
                f"My basket is ¥{t}, why won't WARM30 apply?",
                "code warm30 doesn't work??",
                "It says the coupon can't be combined",
                "checkout won't take my discount code",
            ],
        )
        if "basket" in q:
            why = "under"
        elif "combined" in q:
            why = "other"
        a = [hi(g, lang) or "Let's sort that out. "]
        a.append({"under": f"WARM30 needs an order over ¥299{', and your basket is ¥' + str(t) + ', so you are ¥' + str(299 - t) + ' short' if 'basket' in q else ''}; adding one more item will unlock it.",
                  "other": "Check whether another coupon such as HELLO15 is already applied — WARM30 doesn't stack, so remove that one and try again.",
                  "typo": "Please make sure it's typed as WARM30 with no spaces, and that the order is over ¥299."}[why])  # fmt: skip
        a.append(promo(g, lang, short=True))
    return [q, j(lang, a)]


def mk_late_coupon(g: G, lang: str) -> list[str]:
    shipped = g.p(0.5)
    if lang == "zh":
        q = u(g, lang, ["下单忘了用券，还能补吗？", "付完款才看到WARM30，能退我30吗", "已经下单了能补用优惠券吗", "昨天买的没用券，亏了30",
                        "能不能给我补个30块的优惠"], "")  # fmt: skip
        a = [hi(g, lang) or "理解您的心情，", "付款后没办法再补用优惠券。"]
        a.append(
            "如果订单还没发货，可以取消后重新下单用WARM30；已经发货的话就没法补了，抱歉。"
            if not shipped
            else "如果订单还没发货，可以取消重新下单并输入WARM30。"
        )
        a.append(promo(g, lang, short=True))
    else:
        q = u(
            g,
            lang,
            "",
            [
                "I forgot to use the coupon, can you apply it now?",
                "Just saw WARM30 after paying, can I get the ¥30 back?",
                "I paid yesterday without the code, can you refund the difference?",
            ],
        )
        a = [
            hi(g, lang) or "I understand. ",
            "Coupons can't be added after payment.",
            "If the order hasn't shipped, you can cancel it and reorder with WARM30.",
            promo(g, lang, short=True),
        ]
    return [q, j(lang, a)]


def mk_bigger(g: G, lang: str) -> list[str]:
    q = u(
        g,
        lang,
        [
            "后面还会有更大的折扣吗？",
            "要不要等双十二再买",
            "过几天会不会更便宜",
            "双十二还会再降价吗",
            "现在买还是再等等",
        ],
        [
            "Will there be bigger discounts later?",
            "Should I wait for a better sale?",
            "Will prices drop after Christmas?",
            "Is this the best discount of the year?",
        ],
    )
    if lang == "zh":
        a = [
            hi(g, lang),
            f"{PROMO_ZH}就是我们这个冬天的主要活动，12月20日截止，活动期间不会再叠加其他折扣。",
            "满¥299用WARM30减¥30，喜欢的话可以趁现在入手。",
        ]
    else:
        a = [
            hi(g, lang),
            f"The {PROMO_EN} is our main promotion this winter and it ends on December 20; there won't be extra discounts on top of it.",
            "WARM30 gives ¥30 off orders over ¥299, so now is a good time.",
        ]
    return [q, j(lang, a)]


def mk_intl(g: G, lang: str) -> list[str]:
    country = g.c(COUNTRIES)
    q = u(
        g,
        lang,
        [
            f"在{country[0]}也能用WARM30吗？",
            "海外订单能参加活动吗",
            f"寄{country[0]}的订单可以用优惠券吗",
            "国外能用满减吗",
        ],
        [
            f"Does WARM30 work for orders to {country[1]}?",
            "Can international customers join the sale?",
            f"I'm in {country[1]}, can I still use the code?",
        ],
    )
    if lang == "zh":
        a = [
            hi(g, lang),
            f"可以的，{PROMO_ZH}海外订单也能参加，商品满¥299用WARM30减¥30，活动到12月20日截止。",
            "国际运费统一¥120，不参与包邮，一般5–10天送达。",
        ]
    else:
        a = [
            hi(g, lang),
            f"Yes, the {PROMO_EN} is open to international orders: WARM30 takes ¥30 off orders over ¥299 until December 20.",
            "International shipping is a flat ¥120 and takes 5–10 days.",
        ]
    return [q, j(lang, a)]


MK_TABLE = [(mk_whats_on, 4), (mk_coupon_how, 2), (mk_cart, 3), (mk_stack, 2), (mk_bundle, 2), (mk_deadline, 2), (mk_gift, 2),
            (mk_copy, 2), (mk_brand, 1), (mk_fail, 2), (mk_late_coupon, 1), (mk_bigger, 1), (mk_intl, 1)]  # fmt: skip


def marketing(g: G, lang: str) -> list[str]:
    first = weighted(g, MK_TABLE)
    turns = first(g, lang)
    if g.p(0.25):  # a follow-up question in the same conversation
        nxt = weighted(
            g, [(f, w) for f, w in [(mk_cart, 2), (mk_stack, 1), (mk_deadline, 1), (mk_bundle, 1)] if f is not first]
        )
        g.follow = True
        turns += nxt(g, lang)
        g.follow = False
    return turns


# --------------------------------------------------------------------------------------------------------
# general small talk
# --------------------------------------------------------------------------------------------------------
INTRO_ZH = "我是栖光织物的客服小栖，可以帮您查商品、尺码和库存，处理退换货和订单问题，也能介绍正在进行的优惠活动。"
INTRO_EN = "I'm Lumi, Lumen & Loom's shop assistant. I can help with products, sizes and stock, returns and orders, and our current offers."


def gen_talk(g: G, lang: str) -> list[str]:
    kind = weighted(g, [("greet", 4), ("thanks", 3), ("bye", 2), ("what", 3), ("robot", 2), ("human", 2), ("hours", 1), ("pay", 2),
                        ("weather", 2), ("joke", 1), ("offtopic", 2), ("name", 1), ("where", 1), ("mood", 2)])  # fmt: skip
    zh = lang == "zh"
    if kind == "greet":
        q = u(g, lang, ["你好", "您好", "在吗", "hi，在吗？", "哈喽", "早上好", "晚上好呀", "有人吗？", "你好呀小栖"],
              ["Hi", "Hello!", "Hey there", "Good morning", "Is anyone there?", "hello?", "Good evening!"], False)  # fmt: skip
        a = g.c([f"您好！{INTRO_ZH}有什么可以帮您？", "您好，我在的！请问有什么可以帮您？", "您好呀！想了解商品、订单还是优惠活动？",
                 "您好，欢迎来到栖光织物！今天想看看什么？", "在的在的！我是小栖，您请说。", "您好～有什么我能帮上忙的吗？"]) if zh else \
            g.c([f"Hello! {INTRO_EN} How can I help?", "Hi! I'm here — what can I do for you?",
                 "Hello! Are you looking for a product, help with an order, or our current offers?",
                 "Hi, welcome to Lumen & Loom! What can I help you find today?", "Hello! Lumi here. What can I do for you?"])  # fmt: skip
    elif kind == "thanks":
        q = u(
            g,
            lang,
            ["谢谢", "好的谢谢你", "太感谢了", "谢啦", "明白了，多谢", "ok 谢谢"],
            ["Thanks!", "thank you so much", "Cheers", "Great, thanks", "ok thx"],
            False,
        )
        a = g.c(["不客气！还有什么需要随时找我。", "不用谢，祝您购物愉快！", "很高兴能帮到您，有问题随时来问。", "不客气～祝您今天顺顺利利。",
                 "应该的！有需要再来找小栖。"]) if zh else \
            g.c(["You're welcome! Message me any time.", "My pleasure — enjoy your day!", "Happy to help. Anything else, just ask.",
                 "Any time! Have a lovely day.", "Glad I could help."])  # fmt: skip
    elif kind == "bye":
        q = u(
            g,
            lang,
            ["拜拜", "先这样吧，再见", "没事了，谢谢", "好的，我先去下单了"],
            ["Bye!", "That's all, thanks", "ok bye", "I'll go place my order now"],
            False,
        )
        a = g.c(["好的，再见！祝您生活愉快。", "再见～有需要随时找小栖。", "好的，祝您购物愉快，再见！", "好的，天冷注意保暖，再见！"]) if zh else \
            g.c(["Goodbye, and have a lovely day!", "Bye! I'm here whenever you need me.", "Enjoy your order — bye for now!",
                 "Take care, and stay warm!"])  # fmt: skip
    elif kind == "what":
        q = u(
            g,
            lang,
            ["你能做什么？", "你都能帮我干嘛", "你是做什么的", "能帮我什么忙"],
            ["What can you do?", "What can you help me with?", "what are you for"],
            False,
        )
        a = (
            (INTRO_ZH + g.c(["有问题直接问我就好。", "您想先了解哪方面？"]))
            if zh
            else (INTRO_EN + " " + g.c(["Just ask away.", "Where would you like to start?"]))
        )
    elif kind == "robot":
        q = u(
            g,
            lang,
            ["你是机器人吗？", "你是真人吗", "你是AI吗"],
            ["Are you a bot?", "Am I talking to a real person?", "are you human"],
            False,
        )
        a = "我是栖光织物的AI客服小栖。复杂的问题我也可以帮您转人工客服，人工服务时间是每天9:00–21:00。" if zh else \
            "I'm Lumi, Lumen & Loom's AI assistant. If you need a person, I can pass you to our team, who are available 9:00–21:00 every day."  # fmt: skip
    elif kind == "human":
        q = u(
            g,
            lang,
            ["转人工", "我要人工客服", "能找个真人吗"],
            ["Can I talk to a human?", "agent please", "I'd like to speak to a person"],
            False,
        )
        a = "好的，正在为您转接人工客服（每天9:00–21:00），请稍等。也可以先告诉我您的问题，我先帮您看看。" if zh else \
            "Sure, I'm passing you to a colleague (our team is available 9:00–21:00 daily). Meanwhile, feel free to tell me what it's about."  # fmt: skip
    elif kind == "hours":
        q = u(
            g,
            lang,
            ["你们几点下班？", "客服什么时候在线", "晚上还有人吗"],
            ["What are your hours?", "When is customer service available?"],
            False,
        )
        a = (
            "我全天在线；人工客服每天9:00–21:00。"
            if zh
            else "I'm here around the clock; our human team is available 9:00–21:00 every day."
        )
    elif kind == "pay":
        q, a = g.c([("可以用什么付款？", "支持支付宝、微信支付和银联卡；海外订单可以用Visa、Mastercard或PayPal。"),
                    ("支持微信支付吗", "支持的，微信支付、支付宝和银联卡都可以。"),
                    ("能用花呗吗", "可以的，用支付宝付款时选择花呗就行。"),
                    ("能货到付款吗", "抱歉，暂时不支持货到付款，可以用支付宝、微信支付或银联卡。")] if zh else
                   [("What payment methods do you accept?", "We accept Alipay, WeChat Pay and UnionPay cards, and for international orders Visa, Mastercard and PayPal."),
                    ("Can I pay with PayPal?", "Yes, PayPal works, as do Visa and Mastercard."),
                    ("do you take credit cards", "Yes — Visa, Mastercard and UnionPay cards all work, and so do Alipay, WeChat Pay and PayPal."),
                    ("Is cash on delivery possible?", "Sorry, we don't offer cash on delivery; you can pay by card, PayPal, Alipay or WeChat Pay.")])  # fmt: skip
        q = u(g, lang, q, q, False)
    elif kind == "weather":
        q = u(g, lang, ["今天好冷啊", "最近降温了", "外面下雪了！", "南方的冬天好湿冷", "暖气还没来，冻死了"],
              ["It's freezing today", "Winter is finally here", "it's snowing outside!", "so cold in my flat, no heating yet"], False)  # fmt: skip
        a = g.c(["是呀，注意保暖！需要的话可以看看我们的羊毛盖毯和羊绒围巾，窝在家里会舒服很多。", "天冷记得多穿点～有什么想买的保暖小物可以问我。",
                 "抱抱，冬天在家裹条毯子、穿双厚拖鞋会好很多。想看看的话我帮您推荐。", "下雪天最适合窝在家里啦，记得保暖哦。"]) if zh else \
            g.c(["Stay warm! If you need something cosy, our Wool Throw and Cashmere Scarf are lovely on cold days.",
                 "Wrap up warm! Happy to suggest something cosy if you like.",
                 "A good blanket and warm slippers make a big difference — I can point you to a few if you'd like."])  # fmt: skip
    elif kind == "joke":
        q = u(g, lang, ["讲个笑话吧", "陪我聊会天", "好无聊"], ["Tell me a joke", "I'm bored, chat with me?"], False)
        a = "为什么毛毯从不吵架？因为它们总是很“包容”。还有什么我能帮您的吗？" if zh else \
            "Why did the blanket get promoted? It always had everyone covered. Anything I can help you with today?"  # fmt: skip
    elif kind == "offtopic":
        q = u(g, lang, ["帮我写一下数学作业", "今天股票会涨吗", "推荐一部电影", "你知道怎么做红烧肉吗"],
              ["Can you help with my homework?", "What stocks should I buy?", "Recommend me a movie", "What's the capital of Australia?"], False)  # fmt: skip
        a = "抱歉，这个我帮不上忙，我只负责栖光织物的购物相关问题。商品、订单或优惠方面有需要随时问我。" if zh else \
            "Sorry, that's outside what I can help with — I'm here for Lumen & Loom shopping questions. Ask me anything about products, orders or offers."  # fmt: skip
    elif kind == "name":
        q = u(g, lang, ["你叫什么名字？", "怎么称呼你"], ["What's your name?", "who are you"], False)
        a = (
            "我叫小栖，是栖光织物的客服助手，很高兴为您服务。"
            if zh
            else "I'm Lumi, the Lumen & Loom assistant. Nice to meet you!"
        )
    elif kind == "where":
        q = u(
            g,
            lang,
            ["你们在哪里？有实体店吗", "你们是哪里发货的"],
            ["Where are you based?", "Do you have a physical store?"],
            False,
        )
        a = (
            "我们是网店，没有实体店，所有订单都从杭州仓发货。"
            if zh
            else "We're online only, and every order ships from our warehouse in Hangzhou."
        )
    else:
        q = u(
            g,
            lang,
            ["今天心情不好", "最近好累", "刚下班，累死了"],
            ["Long day today...", "I'm feeling a bit down", "so tired after work"],
            False,
        )
        a = g.c(["辛苦啦，抱抱～早点休息，泡个热水澡会舒服些。需要什么随时找我。", "听起来今天不容易，好好照顾自己。我在这儿，有需要随时说。"]) if zh else \
            g.c(["Sounds like a long one — I hope you get to rest tonight. I'm here if you need anything.", "Sorry to hear that. Take it easy, and let me know if I can help with anything."])  # fmt: skip
    turns = [q, a]
    if kind == "greet" and g.p(0.5):  # greeting followed by a real question from a scenario
        g.follow = True
        turns += weighted(g, [(presales, 1), (marketing, 1)])(g, lang)
        g.follow = False
    return turns


# --------------------------------------------------------------------------------------------------------
# hand-written one-off dialogues (each passes the rubric like the generated ones)
# --------------------------------------------------------------------------------------------------------
HANDWRITTEN = {
    "pre-sales": [
        (
            "zh",
            [
                "那个蓝色的开衫还有吗",
                "您说的是云朵羊毛开衫的雾蓝色吧？雾蓝S–XL目前都有货，售价¥399。还有什么可以帮您的吗？",
            ],
        ),
        (
            "zh",
            [
                "我胖，180斤，有我能穿的吗",
                "有的，晨光亚麻衬衫最大到XXL码，适合身高186 cm、体重90 kg以内，售价¥259；抓绒家居服套装最大XL码，版型宽松。需要的话我帮您具体看尺码。",
            ],
        ),
        (
            "zh",
            [
                "窗帘能定做尺寸吗？",
                "抱歉，遮光窗帘暂时不能定做，固定单片140×250 cm，按片计价¥349，宽窗户可以多拼几片。还有其他想了解的，随时问我。",
            ],
        ),
        (
            "zh",
            [
                "围巾扎不扎脖子？我皮肤比较敏感",
                "羊绒围巾是100%山羊绒，手感软，一般不扎；不过敏感肌建议先贴着手腕试一下。收到后7天内未使用可以无理由退，售价¥329。还有什么可以帮您的吗？",
            ],
        ),
        (
            "zh",
            [
                "抱枕套有枕芯吗",
                "亚麻抱枕套是45×45 cm，不含枕芯，需要您另外配一个45×45 cm的枕芯，售价¥69一个。还需要我帮您看看别的吗？",
            ],
        ),
        (
            "zh",
            [
                "拖鞋38码穿哪个",
                "珊瑚绒拖鞋38码选38–39就好，售价¥59，浅灰和雾粉都有货。还有什么想了解的吗？",
                "冬天穿会不会滑",
                "不会的，珊瑚绒拖鞋是防滑底，木地板和瓷砖上都比较稳。有其他问题也可以继续问我哦。",
            ],
        ),
        (
            "en",
            [
                "do u have anything for a baby?",
                "We don't have baby products, I'm afraid, but the Flannel Blanket (150×200 cm, ¥159) is soft and machine washable, which parents often like. Anything else I can help with?",
            ],
        ),
        (
            "en",
            [
                "Is the cashmere scarf real cashmere??",
                "Yes, the Cashmere Scarf is 100% cashmere, 180×30 cm, ¥329. Let me know if you have any other questions.",
            ],
        ),
        (
            "en",
            [
                "My partner is 190 cm, will the linen shirt fit?",
                "Our largest Morning Linen Shirt is XXL, made for up to 186 cm and 90 kg, so it may be a bit short in the sleeves at 190 cm. If you'd like to try it, you can return it unused within 7 days of delivery. Anything else I can help with?",
            ],
        ),
        (
            "en",
            [
                "Do you sell pillows?",
                "We only sell the Linen Cushion Cover (45×45 cm, ¥69) without an insert, and the Washed-Cotton Bedding Set includes two pillowcases. Is there anything else you'd like to know?",
            ],
        ),
        (
            "zh",
            [
                "羊毛开衫会不会很扎？",
                "云朵羊毛开衫是70%美利奴羊毛混纺，手感软糯，一般不扎；里面穿件薄打底就更舒服了。售价¥399，S–XL都有。还有什么想了解的吗？",
            ],
        ),
        (
            "zh",
            [
                "你们家四件套是纯棉的吗，起不起球",
                "水洗棉四件套是100%水洗棉，按40°C机洗、第一次单独洗，正常使用不容易起球。售价¥599，有1.5 m和1.8 m两种规格。还需要我帮您看看别的吗？",
            ],
        ),
        (
            "zh",
            [
                "我想买窗帘，卧室窗户2米宽，遮光效果好吗",
                "遮光窗帘遮光率约95%，白天拉上基本很暗。单片140×250 cm，2米宽的窗户建议买3片，共¥1047。还有其他想了解的，随时问我。",
            ],
        ),
        (
            "zh",
            [
                "今天下单明天能到北京吗",
                "我们下单后24小时内发货，发往北京一般2–4天送达，明天到的可能性不大。像水洗棉四件套、羊毛盖毯这些现货商品都是24小时内发出。还有什么可以帮您的吗？",
            ],
        ),
        (
            "zh",
            [
                "XL的开衫有炭灰吗？我急用",
                "抱歉，云朵羊毛开衫炭灰XL码暂时缺货，预计12月10日补货。急用的话燕麦色和雾蓝XL码有现货，24小时内发货，2–4天送达。还有什么可以帮您的吗？",
            ],
        ),
        (
            "en",
            [
                "Hi! Is the robe thick or thin?",
                "The Long-Staple Cotton Robe is a medium-thick cotton terry: warm after a bath but not heavy. It's ¥299 in sizes S–XL. Anything else I can help with?",
            ],
        ),
        (
            "en",
            [
                "what's the difference between the 1.5m and 1.8m bedding sets",
                "Only the size: the 1.5 m Washed-Cotton Bedding Set has a 200×230 cm duvet cover and the 1.8 m one a 220×240 cm cover, both with a flat sheet and two pillowcases, both ¥599. Let me know if you have any other questions.",
            ],
        ),
        (
            "en",
            [
                "Does the beanie fit a big head? 61cm",
                "The Chunky Knit Beanie is one size for heads of 54–60 cm, so at 61 cm it may feel snug, though the knit stretches a little. It's ¥89. Anything else I can help with?",
            ],
        ),
        (
            "en",
            [
                "Are your towels any good? My last ones went rough fast",
                "The Cotton Bath Towel is 100% long-staple cotton, 70×140 cm; washing at 40°C with little fabric softener keeps it soft and absorbent for longer. It's ¥129. Happy to help with anything else.",
            ],
        ),
    ],
    "after-sales": [
        (
            "zh",
            [
                "快递显示签收了但我没收到！！",
                "非常抱歉！请提供一下订单号，我马上联系快递核实签收情况。",
                "LL20265530",
                "订单LL20265530显示昨天放在了小区快递柜，取件码已重新发到您的手机。如果柜子里没有，请告诉我，我们马上免费补发，再次抱歉。",
            ],
        ),
        (
            "zh",
            [
                "浴巾洗了一次就掉色了",
                "很抱歉遇到这种情况！麻烦提供一下订单号，再拍张照片发我。",
                "订单号LL20260417，图片发你了",
                "订单LL20260417查到了，掉色属于质量问题，签收15天内可以免费换新，来回运费我们承担，快递员会上门取件。再次抱歉给您添麻烦了。",
            ],
        ),
        (
            "zh",
            [
                "我买的东西想换成别的商品可以吗",
                "可以的，签收7天内、商品未使用吊牌完好，可以先退货再重新下单。麻烦发一下订单号，我帮您办理退货。",
            ],
        ),
        (
            "zh",
            [
                "羽绒被能退吗，拆开了",
                "羽绒被签收7天内未使用、包装和吊牌完好都可以无理由退。方便提供一下订单号吗？我帮您核实签收时间。",
            ],
        ),
        (
            "en",
            [
                "The rug smells weird, is that normal?",
                "Sorry about that! New cotton rugs can have a slight smell that fades after airing for a day or two, but if it's strong or musty that's a defect. Could you share your order number so I can check?",
                "LL20263381. It's quite strong",
                "Thanks — for order LL20263381 a strong smell counts as a defect, so within 15 days of delivery we'll exchange or refund it and cover the shipping. A courier will collect the rug.",
            ],
        ),
        (
            "en",
            [
                "Package came open and the box was crushed",
                "I'm so sorry it arrived like that. What's your order number? And is anything damaged inside?",
                "LL20269902, the towels seem fine",
                "Glad the towels are okay, and sorry again about the packaging on order LL20269902. If you spot any damage within 15 days of delivery, message me and we'll replace it free of charge.",
            ],
        ),
        (
            "en",
            [
                "can i return slippers if i wore them once",
                "For hygiene reasons slippers that have been worn can't go back as a no-reason return, sorry — only unused items with tags within 7 days. If there's a defect, that's different. Could you send me your order number so I can take a look?",
            ],
        ),
        (
            "zh",
            [
                "我收到的羽绒被外包装破了，东西好像没事",
                "很抱歉包装破损让您担心了！方便发一下订单号吗？我帮您登记一下。",
                "LL20264470",
                "订单LL20264470已登记。签收15天内如果发现羽绒被有任何质量问题，随时找我，我们免费换新、承担运费。再次抱歉！",
            ],
        ),
        (
            "zh",
            [
                "怎么还没发货，不是说24小时内发吗",
                "抱歉让您久等了！麻烦发一下订单号，我马上查一下仓库的情况。",
                "LL20267015",
                "订单LL20267015里有预售的灰色手工编织地毯，要到12月15日才发货，所以整单还没发出，抱歉之前没提醒清楚。您着急的话，我可以把现货商品先拆单发出。",
            ],
        ),
        (
            "zh",
            [
                "我要退款！！现在！",
                "非常抱歉让您不愉快了！请告诉我订单号和遇到的问题，我马上帮您处理。",
                "LL20261198 窗帘颜色和图片差太多",
                "订单LL20261198签收还在7天内，可以无理由退货，再次抱歉没能让您满意。请在订单页提交退货，寄回运费由您承担，收到后3个工作日内原路退款。",
            ],
        ),
        (
            "en",
            [
                "hello?? my refund",
                "Sorry for the wait! Could you share your order number so I can check where the refund is?",
                "LL20268850",
                "I've checked order LL20268850: the refund was issued yesterday to your original payment method and should arrive within 3 business days. Sorry again for the wait.",
            ],
        ),
        (
            "en",
            [
                "The duvet is great but I ordered two and only got one",
                "I'm sorry about the missing duvet! May I have your order number so I can check the shipment?",
                "LL20262087",
                "Order LL20262087 was split into two parcels; the second duvet is on its way and should arrive in 2–4 days. Sorry for the confusion!",
            ],
        ),
        (
            "en",
            [
                "I received a damaged rug and I'm furious",
                "I'm so sorry — that's really disappointing. Could you send your order number and a photo of the damage? I'll sort it out right away.",
                "LL20265541, photo sent",
                "Thank you, and sorry again. Order LL20265541 is within the 15-day defect window, so we'll send a new rug free of charge and a courier will collect the damaged one.",
            ],
        ),
    ],
    "marketing": [
        (
            "zh",
            [
                "你们怎么不搞双十一",
                f"我们今年冬天的主活动是{PROMO_ZH}，到12月20日截止：满¥299减¥30（券码WARM30），{BUNDLE_ZH}¥499，还有免费礼品包装。",
            ],
        ),
        (
            "zh",
            [
                "有没有会员积分？",
                f"我们暂时没有会员积分，不过{PROMO_ZH}期间（12月20日截止）满299减30，券码WARM30，新客还可以用HELLO15立减¥15（两张券不能叠加）。",
            ],
        ),
        (
            "zh",
            [
                "帮我写一段给老客户的感谢短信，顺带提一下活动",
                f"“感谢这一年有您陪伴栖光织物。{PROMO_ZH}进行中，满¥299用WARM30减¥30，12月20日截止，愿您的冬天软软的、暖暖的。”",
            ],
        ),
        (
            "en",
            [
                "Do you price match?",
                f"We don't price match, but the {PROMO_EN} is on until December 20: WARM30 gives ¥30 off orders over ¥299, and the {BUNDLE_EN} is ¥499.",
            ],
        ),
        (
            "en",
            [
                "Give me a catchy slogan for the festival",
                f'"Slow down, warm up." — the {PROMO_EN}, until December 20. Use WARM30 for ¥30 off orders over ¥299.',
            ],
        ),
        (
            "en",
            [
                "is free shipping part of the sale?",
                f"Free shipping on orders over ¥199 is standard all year in mainland China. On top of that, the {PROMO_EN} adds ¥30 off orders over ¥299 with WARM30 until December 20.",
            ],
        ),
        (
            "zh",
            [
                "冬日暖居节是什么活动",
                f"{PROMO_ZH}是我们冬季的主题活动，11月20日开始，12月20日截止：全场满¥299用WARM30减¥30，{BUNDLE_ZH}¥499，活动期间免费礼品包装。",
            ],
        ),
        (
            "zh",
            [
                "送礼可以帮我包装吗",
                f"可以的！{PROMO_ZH}期间（到12月20日）礼品包装免费，结算时勾选“礼品包装”并填写贺卡留言就行。",
            ],
        ),
        (
            "zh",
            [
                "学生有优惠吗",
                f"暂时没有学生专属优惠，不过{PROMO_ZH}正在进行中，到12月20日截止，满¥299用WARM30减¥30；新客首单还能用HELLO15减¥15（两张不能叠加）。",
            ],
        ),
        (
            "en",
            [
                "I'm new here, any welcome offer?",
                f"Welcome! New customers get ¥15 off the first order with HELLO15. If your basket is over ¥299, WARM30 (¥30 off) from our {PROMO_EN} is the better pick — it runs until December 20, and the two codes can't be combined.",
            ],
        ),
        (
            "en",
            [
                "Write a WeChat message telling customers the festival ends soon",
                f'"Last days of the {PROMO_EN}! WARM30 still takes ¥30 off orders over ¥299 until December 20 at 23:59 — time to make home a little softer."',
            ],
        ),
        (
            "en",
            [
                "Is the bundle price going up after the sale?",
                f"The {BUNDLE_EN} at ¥499 is part of the {PROMO_EN}, which ends on December 20; after that the three pieces go back to ¥597.",
            ],
        ),
    ],
    "general": [
        (
            "zh",
            [
                "你好，我第一次来你们店",
                f"欢迎光临栖光织物！{INTRO_ZH}新客下单可以用新人券HELLO15立减¥15，有什么想看的吗？",
            ],
        ),
        ("zh", ["你会说英文吗", "会的，您可以用中文或英文问我，我会用您提问的语言回答。"]),
        (
            "zh",
            [
                "你们的东西是哪里生产的",
                "我们的商品都由合作的国内工厂生产，从杭州仓发货。想了解某件商品的材质，我可以帮您查。",
            ],
        ),
        (
            "en",
            [
                "Do you speak Chinese?",
                "Yes — 我也会说中文。Ask in English or Chinese and I'll answer in the same language.",
            ],
        ),
        (
            "en",
            [
                "hi, first time here. what do you sell?",
                "Welcome to Lumen & Loom! We sell clothing and home textiles: wool cardigans, cashmere scarves, bedding, throws, towels and more. New customers can use HELLO15 for ¥15 off the first order.",
            ],
        ),
        ("en", ["You were really helpful, thanks Lumi", "Thank you, that's kind! Come back any time."]),
        (
            "zh",
            [
                "你好，你们是正品吗",
                "您好！栖光织物的商品都是我们自己的品牌，由合作工厂生产、杭州仓直发，每件都有吊牌和洗标。有什么想看的吗？",
            ],
        ),
        ("zh", ["早上好，今天有点事想问", "早上好！您请说，商品、订单、退换货或者优惠活动，我都可以帮您看看。"]),
        ("zh", ["你们周末有人吗", "有的，我全天在线；人工客服每天9:00–21:00，周末也不休息。"]),
        (
            "en",
            [
                "Can you recommend something? I don't know what I want",
                "Of course! Is it for yourself or a gift, and for wearing or for the home? Give me a budget too, and I'll suggest a couple of things.",
            ],
        ),
        ("en", ["Thanks, you've been super patient with me", "It's my pleasure — ask as many questions as you like!"]),
        (
            "en",
            [
                "Do you have an app?",
                "Yes, you can shop in the Lumen & Loom app or on our website; your orders and order numbers show up in both under My Orders.",
            ],
        ),
    ],
}


# --------------------------------------------------------------------------------------------------------
# building, checking, writing
# --------------------------------------------------------------------------------------------------------
MAKERS = {"pre-sales": presales, "after-sales": aftersales, "marketing": marketing, "general": gen_talk}


def to_messages(turns: list[str]) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def check(scenario: str, turns: list[str]) -> list[str]:
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
        bad = [k for k, v in result.items() if not v]
        if bad:
            problems.append(f"turn {i}: {bad}")
    return problems


MAX_TOKENS = 180  # estimated Gemma 3 chat-template tokens; keeps dialogues at about 200 tokens or fewer


def approx_tokens(turns: list[str]) -> int:
    """Gemma 3 tokens of a dialogue in its chat template, estimated (fitted on these files: ±15 for 95%)."""
    text = "".join(turns)
    cjk = sum("\u3400" <= ch <= "\u9fff" for ch in text)
    return round(0.99 * cjk + 0.28 * (len(text) - cjk) + 5.3 * len(turns) + 2.5)


OPENERS = ("你好", "您好", "在吗", "亲", "请问", "麻烦问一下", "hello", "客服你好", "问下", "hi there", "hiya", "hi", "hey",
           "good morning", "quick question")  # fmt: skip


def norm(text: str) -> str:
    """A customer turn without greeting openers, case, spaces and punctuation (to catch near-duplicates)."""
    t = "".join(ch for ch in text.lower() if ch.isalnum())
    stripped = True
    while stripped:
        stripped = False
        for o in OPENERS:
            o = o.replace(" ", "")
            if t.startswith(o) and len(t) > len(o):
                t, stripped = t[len(o) :], True
    return t


def keys(turns: list[str]) -> tuple[str, str]:
    """(opening question, all customer turns), normalised: each must be new across all files."""
    return norm(turns[0]), "|".join(norm(t) for t in turns[0::2])


def build() -> dict[str, dict[str, list[list[dict]]]]:
    seen: set[str] = set()  # normalised opening questions and customer sides of every dialogue so far
    out: dict[str, dict[str, list]] = {}
    for k, (scenario, (n_train, n_held)) in enumerate(SIZES.items()):
        g = G(SEED + 1000 * k)
        total = n_train + n_held
        want = {"zh": round(total * ZH_SHARE), "en": total - round(total * ZH_SHARE)}
        pools: dict[str, list[list[str]]] = {"zh": [], "en": []}
        for lang, turns in HANDWRITTEN[scenario]:
            problems = check(scenario, turns)
            if problems or approx_tokens(turns) > MAX_TOKENS:
                raise SystemExit(
                    f"hand-written {scenario} dialogue fails the rubric {problems} or is too long: {turns}"
                )
            pools[lang].append(turns)
            seen.update(keys(turns))
        for lang in ("zh", "en"):
            tries = 0
            while len(pools[lang]) < want[lang]:
                tries += 1
                if tries > 50000:
                    raise SystemExit(f"{scenario}/{lang}: cannot find enough distinct dialogues")
                sc = scenario
                if scenario == "general" and g.p(0.35):  # the general adapter also sees every scenario
                    sc = g.c(["pre-sales", "after-sales", "marketing"])
                turns = MAKERS[sc](g, lang)
                kk = keys(turns)
                if kk[0] in seen or kk[1] in seen or approx_tokens(turns) > MAX_TOKENS:
                    continue
                problems = check(sc, turns)
                if problems:
                    raise SystemExit(f"{scenario} generated dialogue fails the rubric {problems}: {turns}")
                seen.update(kk)
                pools[lang].append(turns)
        held, train = [], []
        for lang in ("zh", "en"):
            pool = pools[lang]
            g.r.shuffle(pool)
            nh = round(n_held * want[lang] / total)
            held += pool[:nh]
            train += pool[nh:]
        g.r.shuffle(held)
        g.r.shuffle(train)
        out[scenario] = {"train": [to_messages(t) for t in train], "heldout": [to_messages(t) for t in held]}
    return out


def render(rows: list[list[dict]]) -> str:
    return "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the files on disk differ from a fresh build")
    args = ap.parse_args()
    data = build()
    stale = []
    for scenario, splits in data.items():
        for split, rows in splits.items():
            path = HERE / scenario / f"{split}.jsonl"
            text = render(rows)
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(HERE)))
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
