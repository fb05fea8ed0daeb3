#!/usr/bin/env python3
"""The official `openai` client against `focus serve` (focus-cli/tests/serve.rs runs it).

Usage: openai_client.py BASE_URL MODEL
Prints one JSON object with what each call returned; exits non-zero on any failure.
"""
import json
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
out = {"version": openai.__version__}

out["models"] = [m.id for m in client.models.list().data]

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say something."}],
    max_tokens=6,
    temperature=0,
)
out["chat"] = {
    "text": chat.choices[0].message.content,
    "finish_reason": chat.choices[0].finish_reason,
    "completion_tokens": chat.usage.completion_tokens,
}

pieces, finish = [], None
for event in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say something."}],
    max_tokens=6,
    temperature=0,
    stream=True,
):
    for choice in event.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
out["chat_stream"] = {"text": "".join(pieces), "pieces": len(pieces), "finish_reason": finish}

text = client.completions.create(model=model, prompt="abc", max_tokens=5, temperature=0)
out["completion"] = {"text": text.choices[0].text, "finish_reason": text.choices[0].finish_reason}

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    out["unknown_model"] = None
except openai.APIStatusError as e:
    out["unknown_model"] = {"status": e.status_code, "type": e.body.get("type") if isinstance(e.body, dict) else None}

print(json.dumps(out))
