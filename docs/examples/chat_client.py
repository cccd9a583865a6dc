"""The README's openai example: stream one answer from a running server (make serve)."""

from __future__ import annotations

import os
import sys

from openai import OpenAI


def main(base_url: str = "http://127.0.0.1:8000/v1") -> str:
    client = OpenAI(base_url=base_url, api_key=os.environ.get("SWITCHBOARD_API_KEY", "unused"))
    print([m.id for m in client.models.list().data])
    model = client.models.list().data[0].id  # the base model comes first
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "你好，请问几天能发货？"}],
        max_tokens=32,
        stream=True,
        extra_headers={"X-Adapter": "base"},
    )
    text = ""
    for chunk in stream:
        delta = chunk.choices[0].delta.content or ""
        text += delta
        print(delta, end="", flush=True)
    print()
    return text


if __name__ == "__main__":
    main(*sys.argv[1:])
