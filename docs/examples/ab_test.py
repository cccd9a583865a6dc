"""docs/experiments.md's walkthrough as a script: an A/B test of two versions of one adapter, end to end
(register v2, create the experiment, send traffic with feedback, watch the report, conclude).

Usage: `python docs/examples/ab_test.py BASE_URL ADMIN_KEY V1_DIR V2_DIR` against a running server whose
adapter roots hold both dirs. The feedback here is simulated (v2 is rated higher), so the test that runs
this script sees a promote."""

from __future__ import annotations

import sys
from typing import Any

import httpx
from openai import OpenAI


def main(base: str, admin_key: str, v1_dir: str, v2_dir: str, users: int = 60) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    # 1. two versions of "greeter"; production clients call the alias greeter-prod, now on v1
    for path in (v1_dir, v2_dir):
        httpx.post(f"{base}/admin/adapters", json={"name": "greeter", "path": path}, headers=admin).raise_for_status()
    httpx.put(f"{base}/admin/aliases/greeter-prod", json={"target": "greeter@v1"}, headers=admin).raise_for_status()

    # 2. the experiment: the control first, sticky per user, the alias it tests, a guardrail
    definition = {
        "variants": {"greeter@v1": 50, "greeter@v2": 50},
        "sticky": "user",
        "alias": "greeter-prod",
        "guardrails": {"max_error_rate_increase": 0.05, "max_latency_p95_ratio": 2},
    }
    httpx.put(f"{base}/admin/experiments/greeter-ab", json=definition, headers=admin).raise_for_status()

    # 3. clients call the experiment by name with their user id, and send feedback on each completion
    client = OpenAI(base_url=f"{base}/v1", api_key="unused")
    for i in range(users):
        raw = client.chat.completions.with_raw_response.create(
            model="greeter-ab", user=f"customer-{i}", messages=[{"role": "user", "content": "Hello!"}], max_tokens=4
        )
        variant, completion = raw.headers["x-adapter"], raw.parse()
        stars = (4 if variant == "greeter@v2" else 3) + i % 2  # simulated ratings: v2 a star better
        httpx.post(f"{base}/v1/feedback", json={"id": completion.id, "score": stars}).raise_for_status()

    # 4. watch: the readable report (also `switchboard experiments report greeter-ab`)
    print(httpx.get(f"{base}/admin/experiments/greeter-ab?format=text", headers=admin).text)
    report: dict[str, Any] = httpx.get(f"{base}/admin/experiments/greeter-ab", headers=admin).json()

    # 5. conclude when the report says promote: greeter-prod moves to the winner, the experiment ends
    if report["decision"] == "promote":
        done = httpx.post(
            f"{base}/admin/experiments/greeter-ab/conclude", json={"winner": report["winner"]}, headers=admin
        )
        done.raise_for_status()
        print(f"greeter-prod -> {done.json()['winner']} (was {done.json()['previous']})")
    return report


if __name__ == "__main__":
    main(*sys.argv[1:5])
