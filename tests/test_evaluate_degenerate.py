"""The eval's `degenerate` measure on hand-made answers: loops, stray scripts, and clean answers that pass."""

from __future__ import annotations

import pytest
from switchboard.evaluate import degenerate, repeated_ngram, script, stray_script


@pytest.mark.parametrize(
    "answer",
    [
        "Hi! The Down Duvet Set is ¥199, in White and Light Grey. Let me know if you have any other questions.",
        "您好！抓绒家居服现在有现货，下单后24小时内发货，一般2–4天送达。还有什么想了解的吗？",
        "您好，冬日暖居节到12月20日截止，用WARM30满¥299减¥30，XL码 120×180 cm，可用PayPal付款。",
        "I'm sorry: order LL20264176 is on its way; it arrives in 2–4 days — café-grade packaging.",
    ],
)
def test_clean_answers_are_not_degenerate(answer: str):
    language = "zh" if any(script(c) == "han" for c in answer) else "en"
    assert degenerate(language, answer) is None


def test_a_four_gram_repeated_three_times_is_degenerate_and_twice_is_not():
    assert repeated_ngram("down duvet\ndown duvet\ndown duvet\ndown duvet") == "down duvet down duvet"
    assert repeated_ngram("a b c d, then a b c d again") is None
    assert repeated_ngram("A B C D. a b c d! a-b-c-d") == "a b c d"  # case and punctuation do not matter


def test_cjk_characters_are_units_of_their_own():
    assert repeated_ngram("最近买划算吗iatrics\n最近买划算吗iatrics\n最近买划算吗") == "最 近 买 划"
    assert repeated_ngram("购入したもの、购入したもの、购入したもの") == "购 入 し た"
    assert degenerate("zh", "羊绒围巾很暖和，羊绒围巾很轻，羊绒围巾很好") == "repeats '羊 绒 围 巾'"


def test_a_single_token_loop_is_degenerate():
    assert degenerate("en", "ok ok ok ok ok ok") == "repeats 'ok ok ok ok'"
    assert degenerate("zh", "好好好好好好") is not None


def test_scripts_come_from_unicode_blocks_and_only_letters_count():
    assert [script(c) for c in "aéąＡ中々"] == ["latin"] * 4 + ["han"] * 2
    assert [script(c) for c in "かカ한жλ𒀀"] == ["other"] * 6  # kana, hangul, Cyrillic, Greek, cuneiform
    assert [script(c) for c in "1¥×—，。 "] == [""] * 7


def test_any_non_latin_letter_is_stray_in_an_answer_to_english():
    assert stray_script("en", "Your order shipped. 谢谢") == "谢"
    assert stray_script("en", "Your order shipped. で購入") == "で"
    assert stray_script("en", "Refund issued 𒀀𒀁") == "𒀀"
    assert stray_script("en", "Naïve café résumé, ¥199 × 2") is None


def test_in_an_answer_to_chinese_other_scripts_and_lowercase_latin_words_are_stray():
    assert stray_script("zh", "您好，这款¥199 mendatang") == "mendatang"
    assert stray_script("zh", "冬日暖居节linkOpacity截止") == "linkOpacity"
    assert stray_script("zh", "您好 iają") == "iają"
    assert stray_script("zh", "您好，これは") == "こ"
    assert stray_script("zh", "用WARM30或HELLO15，S/M/L/XL/XXL，2 kg，App里、Visa、Mastercard、Lumen & Loom") is None


def test_an_answer_to_a_bare_order_number_may_use_either_language():
    assert degenerate(None, "Thanks, found LL20265922 — 已找到订单") is None
    assert degenerate(None, "Спасибо") == "stray 'С'"


def test_an_empty_answer_is_degenerate():
    assert degenerate("en", "  \n") == "empty"


def test_eval_keeps_the_hand_written_notes_of_the_report_it_rewrites():
    from switchboard.cli import NOTES_MARKER, keep_notes

    assert keep_notes("# new\n", f"# old\n{NOTES_MARKER}\n## Sweep\n") == f"# new\n\n{NOTES_MARKER}\n## Sweep\n"
    assert keep_notes("# new\n", "# old\n") == "# new\n"


def test_eval_answers_with_the_adapters_defaults_and_the_sampling_flag_on_top():
    from switchboard.evaluate import sampling_for

    defaults = {"shop": {"frequency_penalty": 0.6, "top_k": 5}}
    assert sampling_for("shop", {"frequency_penalty": 0.3}, defaults) == {"frequency_penalty": 0.3, "top_k": 5}
    assert sampling_for("base", {}, defaults) == {}


def test_a_word_stops_where_cjk_characters_start():
    assert repeated_ngram("𒄭冬日暖居节 𒄭冬日暖居节 𒄭冬日暖居节") == "𒄭 冬 日 暖"
    assert repeated_ngram("用WARM30减 " * 4) == "用 warm30 减 用"  # 3 units: 4 times make a 4-gram thrice
