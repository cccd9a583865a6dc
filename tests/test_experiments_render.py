"""The report's readable forms (experiments/render.py): every variant's line, the comparisons with the
control, the decision and why, as aligned text and as a markdown table."""

from __future__ import annotations

import numpy as np
from switchboard.experiments import Experiment
from switchboard.experiments.decision import Summary, VariantData, report
from switchboard.experiments.render import render


def sample() -> dict:
    rng = np.random.default_rng(0)
    data = {
        "sales@v10": VariantData(
            (120, 2, 3000, 900, 4), (0.05, 0.1, 0.5, 1.0), Summary.of_scores(list(rng.normal(3, 1, 90)))
        ),
        "sales@v2": VariantData(
            (118, 0, 2950, 880, 0), (0.05, 0.25, 0.5, 2.5), Summary.of_scores(list(rng.normal(3.8, 1, 90)))
        ),
    }
    return report("tone", Experiment({"sales@v10": 1.0, "sales@v2": 1.0}), data)


def test_text_has_every_variant_the_comparison_and_the_decision_with_its_reason():
    text = render(sample(), "text")
    lines = text.splitlines()
    assert lines[0] == "experiment tone (running, control sales@v10, sticky user)"
    v10 = next(line for line in lines if line.startswith("sales@v10 (control)"))
    assert "120" in v10 and "2 (0.017)" in v10 and "3900" in v10 and "0.050 / 0.100" in v10 and "0.500 / 1.000" in v10
    assert any(line.startswith("sales@v2 ") and "+0." in line and "better" in line for line in lines)
    assert "decision: promote" in text and "why: sales@v2 scores +" in text and "always-valid" in text


def test_markdown_is_tables_and_a_bold_decision():
    md = render(sample(), "markdown")
    assert md.startswith("## experiment tone")
    assert "| variant | weight | requests |" in md and "|---|---|" in md
    assert "| sales@v10 (control) | 1.00 | 120 |" in md
    assert "**decision: promote**" in md


def test_an_experiment_without_feedback_renders_dashes():
    out = report("empty", Experiment({"a@v1": 1.0, "b@v1": 1.0}), {})
    text = render(out, "text")
    assert "decision: keep running" in text and "not enough feedback" in text and " - " in text
