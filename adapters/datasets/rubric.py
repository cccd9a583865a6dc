"""Automatic checks of the scenario conventions in adapters/datasets/README.md.

Pure Python, no dependencies. `score(scenario, question, answer)` returns {check name: passed} for the
checks that apply to that answer; a check that does not apply is left out (an English answer that names
no return window has no `policy_figures` entry, say). `question` is the customer's text: the last user
turn, or all user turns of the dialogue joined with newlines (then an order number given in an earlier
turn counts).

Checks (scenario: name):
  all:         language           answer is in the question's language (CJK share of the letters)
  all:         policy_figures     every policy figure stated is the shop's: return window 7 days, defect
                                  exchange 15 days, refund 3 business days, dispatch 24 hours, delivery
                                  2-4 days (mainland) / 5-10 days (international), free shipping over
                                  ¥199, shipping fee ¥12 / ¥120, WARM30 = ¥30 off over ¥299, bundle ¥499
  all:         catalogue_prices   a price written right after a product's name is that product's price
  after-sales: order_number       asks for the order number (订单号 / order number), or repeats the LL
                                  number the customer gave
  after-sales: apology            apologises, when the customer's last turn (the question's last line)
                                  reports something that went wrong
  marketing:   promotion_named    names 冬日暖居节 / Winter Warm-Home Festival
  marketing:   promotion_end_date states its end date (12月20日 / December 20 / 2026-12-20), and no other
                                  end date in a sentence naming the promotion or WARM30
  pre-sales:   catalogue_fact     names a catalogue product, or a catalogue price or dimension
  pre-sales:   offers_help        offers further help
"""

from __future__ import annotations

import re

SCENARIOS = ("pre-sales", "after-sales", "marketing", "general")

# The catalogue as the rubric needs it: names (full + short forms customers and answers use), price in
# CNY, sizes. The full catalogue (colours, stock, care) is in README.md and phrases/shop.yaml.
PRODUCTS: list[dict] = [
    {"id": "cardigan", "zh": "云朵羊毛开衫", "en": "Cloud Wool Cardigan", "price": 399,
     "zh_alias": ["羊毛开衫", "云朵开衫"], "en_alias": ["wool cardigan"], "sizes": ["S", "M", "L", "XL"]},
    {"id": "shirt", "zh": "晨光亚麻衬衫", "en": "Morning Linen Shirt", "price": 259,
     "zh_alias": ["亚麻衬衫"], "en_alias": ["linen shirt"], "sizes": ["S", "M", "L", "XL", "XXL"]},
    {"id": "scarf", "zh": "羊绒围巾", "en": "Cashmere Scarf", "price": 329,
     "zh_alias": ["围巾"], "en_alias": ["cashmere scarf"], "sizes": ["180×30 cm"]},
    {"id": "lounge", "zh": "抓绒家居服套装", "en": "Fleece Lounge Set", "price": 219,
     "zh_alias": ["家居服套装", "家居服"], "en_alias": ["lounge set"], "sizes": ["S", "M", "L", "XL"]},
    {"id": "beanie", "zh": "粗针毛线帽", "en": "Chunky Knit Beanie", "price": 89,
     "zh_alias": ["毛线帽"], "en_alias": ["knit beanie", "beanie"], "sizes": ["one size (head 54–60 cm)"]},
    {"id": "trousers", "zh": "棉麻阔腿裤", "en": "Cotton-Linen Wide-Leg Trousers", "price": 239,
     "zh_alias": ["阔腿裤"], "en_alias": ["wide-leg trousers"], "sizes": ["S", "M", "L", "XL"]},
    {"id": "robe", "zh": "长绒棉浴袍", "en": "Long-Staple Cotton Robe", "price": 299,
     "zh_alias": ["浴袍"], "en_alias": ["cotton robe", "robe"], "sizes": ["S", "M", "L", "XL"]},
    {"id": "bedding", "zh": "水洗棉四件套", "en": "Washed-Cotton Bedding Set", "price": 599,
     "zh_alias": ["四件套"], "en_alias": ["bedding set"], "sizes": ["1.5 m", "1.8 m", "200×230 cm", "220×240 cm"]},
    {"id": "duvet", "zh": "白鹅绒羽绒被", "en": "Goose-Down Duvet", "price": 899,
     "zh_alias": ["羽绒被"], "en_alias": ["down duvet", "duvet"], "sizes": ["200×230 cm"]},
    {"id": "throw", "zh": "羊毛盖毯", "en": "Wool Throw", "price": 459,
     "zh_alias": ["盖毯"], "en_alias": ["wool throw"], "sizes": ["130×170 cm"]},
    {"id": "cushion", "zh": "亚麻抱枕套", "en": "Linen Cushion Cover", "price": 69,
     "zh_alias": ["抱枕套"], "en_alias": ["cushion cover"], "sizes": ["45×45 cm"]},
    {"id": "towel", "zh": "纯棉浴巾", "en": "Cotton Bath Towel", "price": 129,
     "zh_alias": ["浴巾"], "en_alias": ["bath towel"], "sizes": ["70×140 cm"]},
    {"id": "curtain", "zh": "遮光窗帘", "en": "Blackout Curtain", "price": 349,
     "zh_alias": ["窗帘"], "en_alias": ["curtain"], "sizes": ["140×250 cm"]},
    {"id": "rug", "zh": "手工编织地毯", "en": "Hand-Woven Rug", "price": 699,
     "zh_alias": ["编织地毯", "地毯"], "en_alias": ["woven rug", "rug"], "sizes": ["120×180 cm"]},
    {"id": "flannel", "zh": "法兰绒毛毯", "en": "Flannel Blanket", "price": 159,
     "zh_alias": ["法兰绒毯", "毛毯"], "en_alias": ["flannel blanket"], "sizes": ["150×200 cm"]},
    {"id": "slippers", "zh": "珊瑚绒拖鞋", "en": "Coral Fleece Slippers", "price": 59,
     "zh_alias": ["拖鞋"], "en_alias": ["fleece slippers", "slippers"], "sizes": ["36–37", "38–39", "40–41", "42–43"]},
]  # fmt: skip

POLICY = {
    "return_days": 7,  # no-reason returns, from receipt
    "defect_days": 15,  # free exchange (or refund) for defects / transit damage, from receipt
    "refund_business_days": 3,  # to the original payment method
    "dispatch_hours": 24,
    "mainland_days": (2, 4),
    "international_days": (5, 10),
    "free_shipping_over": 199,  # mainland China
    "shipping_fee": 12,  # mainland orders under ¥199
    "international_fee": 120,  # flat
    "coupon": "WARM30",
    "coupon_off": 30,
    "coupon_min": 299,
    "new_customer_coupon": "HELLO15",
    "bundle_price": 499,  # Cosy Corner Bundle: Wool Throw + 2 Linen Cushion Covers (list ¥597)
    "bundle_list_price": 597,
}
PROMOTION = {"zh": "冬日暖居节", "en": "Winter Warm-Home Festival", "end": "2026-12-20"}
BUNDLE = {"zh": "暖居组合", "en": "Cosy Corner Bundle"}
ORDER_RE = re.compile(r"LL\s?\d{8}", re.IGNORECASE)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_NAMES = re.compile(r"Lumen\s*&\s*Loom|WARM30|HELLO15|LL\s?\d{8}", re.IGNORECASE)


def cjk_share(text: str) -> float:
    """CJK characters / (CJK characters + Latin words), after dropping the brand name, coupon codes and order
    numbers (which both languages use); 0.0 when nothing is left. One CJK character weighs about one word."""
    text = _NAMES.sub(" ", text)
    cjk, words = len(_CJK.findall(text)), len(_LATIN_WORD.findall(text))
    return cjk / (cjk + words) if cjk + words else 0.0


def language(text: str) -> str:
    """'zh' or 'en': 'zh' when CJK characters are at least half of the (characters + words)."""
    return "zh" if cjk_share(text) >= 0.5 else "en"


# --- numbers ------------------------------------------------------------------------------------------
_ZH_DIGITS = {"零": 0, "一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_EN_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "twenty": 20,
    "thirty": 30,
}  # fmt: skip


def _zh_number(s: str) -> int:
    if "十" not in s:
        return _ZH_DIGITS.get(s, 0)
    tens, _, ones = s.partition("十")
    return (_ZH_DIGITS.get(tens, 1) if tens else 1) * 10 + (_ZH_DIGITS.get(ones, 0) if ones else 0)


def _normalise(text: str) -> str:
    """Digits for number words next to day/hour units; one kind of dash; ¥ for 元/yuan/RMB amounts."""
    text = re.sub(
        r"([零一二两三四五六七八九十]{1,3})(?=\s*(?:个)?\s*(?:天|工作日|小时))",
        lambda m: str(_zh_number(m.group(1))),
        text,
    )
    words = "|".join(_EN_NUMBERS)
    text = re.sub(
        rf"\b({words})(?=[\s-]+(?:business |working )?(?:days?|hours?)\b)",
        lambda m: str(_EN_NUMBERS[m.group(1).lower()]),
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"[‐-―−~～]", "-", text)
    text = re.sub(r"(\d+)\s*(?:元|块|yuan|RMB|CNY)", r"¥\1", text, flags=re.IGNORECASE)
    text = re.sub(r"(?:RMB|CNY)\s*(\d+)", r"¥\1", text, flags=re.IGNORECASE)
    return text.replace("￥", "¥")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[。！？!?；;\n])|(?<=\.)\s+", text) if s.strip()]


_TOPICS = {
    "return": r"退货|退回|无理由|退换|\breturn",
    "exchange": r"换货|换成|换一|调换|包换|\bexchange|\bswap|\breplace",
    "defect": r"质量|瑕疵|破损|损坏|破洞|\bdefect|\bdamage|\bfaulty|\bbroken|\bflaw",
    "refund": r"退款|到账|\brefund",
    "shipping": r"送达|到货|配送|运输|快递|物流|寄到|收到|\bdeliver|\barriv|\bshipping|\bship|\btransit",
    "dispatch": r"发货|发出|寄出|\bdispatch|\bship",
}


def _topics(sentence: str) -> set[str]:
    return {t for t, pat in _TOPICS.items() if re.search(pat, sentence, re.IGNORECASE)}


_FREE_SHIPPING = re.compile(
    r"满\s*¥?\s*(\d+)\s*(?:即|就|可)?\s*(?:包邮|免运费|免邮)"
    r"|free (?:shipping|delivery) (?:on|for) (?:all )?(?:orders? )?(?:over|above|from) ¥\s*(\d+)",
    re.IGNORECASE,
)
_SHIPPING_FEE = re.compile(
    r"(?<!免)运费\s*(?:是|为|收|要)?\s*¥\s*(\d+)|shipping (?:fee |costs? )?(?:is |of )?¥\s*(\d+)", re.IGNORECASE
)
_COUPON = re.compile(  # 满299减30 / ¥30 off orders over ¥299
    r"满\s*¥?\s*(\d+)\s*(?:立|即|可)?减\s*¥?\s*(\d+)"
    r"|¥\s*(\d+) off (?:any |your |an? )?(?:orders? )?(?:of |over |above |from )¥\s*(\d+)",
    re.IGNORECASE,
)
_PRICE_LINK = (  # what may stand between a product's name and its price: "云朵羊毛开衫售价¥399", "the robe is ¥299"
    r"(?:\s|：|:|，|,|（|\(|售价|价格|现价|单价|只要|仅需|仅|是|为|每片|每件"
    r"|\bis\b|\bcosts?\b|\bpriced at\b|\bsells for\b)*"
)


def _policy_figures(answer: str) -> bool | None:
    """False when a stated policy figure is wrong, True when at least one is stated and all are right,
    None when the answer states none."""
    text = _normalise(answer)
    all_topics = _topics(text)
    seen, ok = False, True

    def check(good: bool) -> None:
        nonlocal seen, ok
        seen, ok = True, ok and good

    for sentence in _sentences(text):
        topics = _topics(sentence) or all_topics
        s = sentence
        # day ranges: only delivery times are ranges
        for m in re.finditer(
            r"(\d+)\s*(?:-|到|至|to)\s*(\d+)\s*(?:个)?\s*(?:工作日|天|(?:business |working )?days)", s, re.I
        ):
            check((int(m.group(1)), int(m.group(2))) in {POLICY["mainland_days"], POLICY["international_days"]})
        s = re.sub(
            r"(\d+)\s*(?:-|到|至|to)\s*(\d+)\s*(?:个)?\s*(?:工作日|天|(?:business |working )?days)", " ", s, flags=re.I
        )
        # business days: only the refund
        for m in re.finditer(r"(\d+)\s*(?:个)?\s*(?:工作日|(?:business|working)[ -]days?)", s, re.I):
            check(int(m.group(1)) == POLICY["refund_business_days"])
        s = re.sub(r"(\d+)\s*(?:个)?\s*(?:工作日|(?:business|working)[ -]days?)", " ", s, flags=re.I)
        # windows ("7天内", "7天无理由", "within 7 days", "7-day", "7 days of delivery")
        for m in re.finditer(
            r"(\d+)\s*天\s*(?:内|之内|以内|无理由|包换|可)|within\s+(\d+)\s*days|(\d+)[- ]day\b"
            r"|(\d+)\s*days?\s+(?:of|from|after)\s+(?:receipt|receiving|delivery|arrival)",
            s,
            re.I,
        ):
            n = int(next(g for g in m.groups() if g))
            allowed: set[int] = set()
            if topics & {"return", "exchange", "defect"}:
                allowed |= {POLICY["return_days"], POLICY["defect_days"]}
            if topics & {"shipping", "dispatch"}:
                allowed |= set(range(POLICY["mainland_days"][0], POLICY["international_days"][1] + 1)) | {1}
            if "refund" in topics:
                allowed |= {POLICY["refund_business_days"]}
            if allowed:
                check(n in allowed)
        # dispatch hours
        if "dispatch" in topics:
            for m in re.finditer(r"(\d+)\s*(?:小时|hours?\b|h\b)", s, re.I):
                check(int(m.group(1)) == POLICY["dispatch_hours"])
        # money
        for m in _FREE_SHIPPING.finditer(s):
            check(int(m.group(1) or m.group(2)) == POLICY["free_shipping_over"])
        for m in _SHIPPING_FEE.finditer(s):
            check(int(m.group(1) or m.group(2)) in {POLICY["shipping_fee"], POLICY["international_fee"]})
        for m in _COUPON.finditer(s):
            pair = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(4)), int(m.group(3)))
            check(pair == (POLICY["coupon_min"], POLICY["coupon_off"]))
        if re.search(f"{BUNDLE['zh']}|{BUNDLE['en']}", s, re.I):
            amounts = {int(a) for a in re.findall(r"¥\s*(\d+)", s)}
            if amounts:
                bundle_ok = {499, 597, 98, 469, 459, 69, 138, 30, 299, 199}
                check(amounts <= bundle_ok and POLICY["bundle_price"] in amounts | {469})
    return ok if seen else None


def _names(p: dict) -> list[str]:
    return [p["zh"], p["en"], *p["zh_alias"], *p["en_alias"]]


def _catalogue_prices(answer: str) -> bool | None:
    text = _normalise(answer)
    seen, ok = False, True
    for sentence in _sentences(text):
        if re.search(f"{BUNDLE['zh']}|{BUNDLE['en']}", sentence, re.IGNORECASE):
            continue  # the bundle's price follows the names of its parts; policy_figures checks it
        for p in PRODUCTS:
            for name in _names(p):
                for m in re.finditer(re.escape(name) + r"(?![A-Za-z])" + _PRICE_LINK + r"¥\s*(\d+)", sentence, re.I):
                    seen, ok = True, ok and int(m.group(1)) == p["price"]
    return ok if seen else None


def _catalogue_fact(answer: str) -> bool:
    low = _normalise(answer).lower()
    if any(name.lower() in low for p in PRODUCTS for name in _names(p)):
        return True
    prices = {p["price"] for p in PRODUCTS}
    if any(int(a) in prices for a in re.findall(r"¥\s*(\d+)", low)):
        return True
    dims = {d.lower() for p in PRODUCTS for d in p["sizes"] if "×" in d}
    return any(d in low or d.replace(" cm", "") in low for d in dims)


_HELP = (
    r"还有什么|还有其他|还有别的|还需要|其他问题|随时|需要的话|继续问|"
    r"anything else|other questions?|happy to help|glad to help|let me know|just ask|feel free"
)
_APOLOGY = r"抱歉|对不起|不好意思|歉意|sorry|apologi"
_TROUBLE = (
    r"坏|破|裂|脏|污|少了|漏发|少发|发错|寄错|送错|颜色不对|尺码不对|货不对|还没到|没收到|没到|没有到|太慢|好慢|慢死|"
    r"质量差|质量太差|什么质量|质量也太|质量不行|起球|掉色|褪色|开线|开胶|掉毛|漏毛|抽丝|断了|掉了|渍|洞|拉不上|缩水|"
    r"异味|散线|散开|划痕|口子|霉|投诉|生气|失望|差评|怎么回事|还没退|没退|丢了|延误|不满意|离谱|"
    r"broken|damaged|torn|hole|stain|missing|wrong (?:item|colou?r|size|product|one|thing)|sent the wrong|late\b|"
    r"still (?:hasn't|haven't|not|no)|hasn't arrived|not arrived|never arrived|didn't arrive|delayed|pilling|faded|"
    r"disappointed|angry|unacceptable|ridiculous|complain|where is my|lost|not received|haven't received|ripped|"
    r"came apart|falling apart|fell off|shedding|sheds|no refund|still waiting|come apart|coming apart|split|snapped|"
    r"unravel|fray|rip\b|smell|shrank|colou?r ran|pulled thread|unglued|mould|mold"
)
_END_DATE = (
    r"12\s*月\s*20\s*[日号]|2026[-/.年]\s*12[-/.月]\s*20|december\s+20(?!\d)|dec\.?\s+20(?!\d)"
    r"|20\s+dec(?:ember)?\b|12/20\b"
)
_ANY_DATE = (
    r"12\s*月\s*(\d{1,2})\s*[日号]|2026[-/.年]\s*12[-/.月]\s*(\d{1,2})|(?:december|dec\.?)\s+(\d{1,2})(?!\d)"
    r"|(\d{1,2})\s+dec(?:ember)?\b"
)
_END_WORDS = r"截止|截至|结束|为止|到期|ends?\b|ending|until|till|through|last day|runs to|expires?"


def score(scenario: str, question: str, answer: str) -> dict[str, bool]:
    """Check `answer` (to the customer's `question`) against `scenario`'s conventions; see the module doc."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {SCENARIOS}")
    result: dict[str, bool] = {}
    if _CJK.search(question) or _LATIN.search(_NAMES.sub("", question)):  # a bare order number has no language
        result["language"] = bool(answer.strip()) and language(answer) == language(question)
    figures = _policy_figures(answer)
    if figures is not None:
        result["policy_figures"] = figures
    prices = _catalogue_prices(answer)
    if prices is not None:
        result["catalogue_prices"] = prices

    if scenario == "after-sales":
        asked = re.search(r"订单号|订单编号|order (?:number|no\.?|id)\b", answer, re.IGNORECASE) is not None
        given = {g.upper().replace(" ", "") for g in ORDER_RE.findall(question)}
        repeated = any(g in answer.upper().replace(" ", "") for g in given)
        result["order_number"] = asked or repeated
        last_turn = question.strip().splitlines()[-1] if question.strip() else ""
        if re.search(_TROUBLE, last_turn, re.IGNORECASE):
            result["apology"] = re.search(_APOLOGY, answer, re.IGNORECASE) is not None
    elif scenario == "marketing":
        result["promotion_named"] = re.search(f"{PROMOTION['zh']}|{PROMOTION['en']}", answer, re.I) is not None
        right = re.search(_END_DATE, answer, re.IGNORECASE) is not None
        wrong = False
        for sentence in _sentences(answer):
            named = re.search(f"{PROMOTION['zh']}|{PROMOTION['en']}|WARM30", sentence, re.IGNORECASE)
            if named and re.search(_END_WORDS, sentence, re.IGNORECASE):
                for m in re.finditer(_ANY_DATE, sentence, re.IGNORECASE):
                    day = int(next(g for g in m.groups() if g))
                    wrong = wrong or day != 20
        result["promotion_end_date"] = right and not wrong
    elif scenario == "pre-sales":
        result["catalogue_fact"] = _catalogue_fact(answer)
        result["offers_help"] = re.search(_HELP, answer, re.IGNORECASE) is not None
    return result


if __name__ == "__main__":
    examples = [
        ("pre-sales", "云朵开衫多少钱？", "您好！云朵羊毛开衫售价¥399，有S–XL四个尺码。还有什么可以帮您的吗？", True),
        ("pre-sales", "How much is the cardigan?", "云朵羊毛开衫售价¥399。", False),  # wrong language
        ("pre-sales", "How much is the cardigan?", "The Cloud Wool Cardigan is ¥359.", False),  # wrong price
        ("pre-sales", "四件套几天到上海？", "水洗棉四件套有现货，24小时内发货，2–4天送达。还有问题随时问我。", True),
        ("pre-sales", "几天能到上海？", "一般2–4天送达。", False),  # no catalogue fact, no offer of help
        ("pre-sales", "How long to Berlin?", "International delivery takes 3-5 days. Anything else?", False),
        ("after-sales", "我要退货", "好的，请提供您的订单号，我帮您查一下。收到商品7天内可无理由退货。", True),
        ("after-sales", "我要退货", "可以的，收到商品30天内都能退。", False),  # no order number, wrong window
        (
            "after-sales",
            "The towel arrived torn. Order LL20264411",
            "Order LL20264411: I'm so sorry! Defects within 15 days are exchanged for free and we cover the shipping.",
            True,
        ),
        ("after-sales", "The towel arrived torn.", "Please send your order number.", False),  # no apology
        ("marketing", "有什么优惠？", "冬日暖居节进行中，到12月20日截止：满299减30，券码WARM30。", True),
        ("marketing", "Any discounts?", "Use WARM30 for ¥30 off orders over ¥299!", False),  # promotion missing
        ("marketing", "Any discounts?", "The Winter Warm-Home Festival ends December 25.", False),  # wrong date
        ("general", "谢谢你", "不客气！祝您生活愉快。", True),
    ]
    failures = 0
    for scenario, question, answer, expect in examples:
        result = score(scenario, question, answer)
        passed = all(result.values())
        failures += passed != expect
        mark = "ok " if passed == expect else "BAD"
        print(f"{mark} {scenario:11} expect={'pass' if expect else 'fail'} {result}  <- {answer[:40]!r}")
    print("self-test:", "passed" if not failures else f"{failures} unexpected result(s)")
    raise SystemExit(1 if failures else 0)
