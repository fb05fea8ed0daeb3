"""Renders chat templates with Jinja2 exactly as transformers' apply_chat_template does
(trim_blocks, lstrip_blocks, a raise_exception function), for the Rust chat-template test.

Usage: python3 tests/scripts/chat_reference.py SMOLLM2.gguf > tests/fixtures/chat-templates.json
"""
import json
import struct
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def gguf_metadata(path):
    """The metadata key/values of a GGUF file (arrays of any type included)."""
    d = open(path, "rb").read(16 << 20)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, d, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return v

    def string():
        nonlocal pos
        n = take("Q")
        v = d[pos : pos + n].decode("utf-8")
        pos += n
        return v

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert d[:4] == b"GGUF"
    pos = 4
    take("I")
    take("Q")
    out = {}
    for _ in range(take("Q")):
        k = string()
        out[k] = value(take("I"))
    return out


def render(template, messages, add_generation_prompt, bos, eos):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
    )


# A Llama-3-style template: whitespace control, trim_blocks/lstrip_blocks, Python string
# methods, loop variables, a namespace, and raise_exception on a bad role order.
LLAMA_STYLE = """{{ bos_token }}
{% set ns = namespace(system=none) %}
{% for message in messages %}
    {% if message['role'] == 'system' %}
        {% set ns.system = message['content'].strip() %}
    {% endif %}
{% endfor %}
{% if ns.system is not none %}
<|start_header_id|>system<|end_header_id|>\n\n{{ ns.system }}<|eot_id|>
{% endif %}
{% for message in messages if message['role'] != 'system' %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>
{% endfor %}
{% if add_generation_prompt %}
<|start_header_id|>assistant<|end_header_id|>\n\n
{%- endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "What is the passkey?"}],
    [
        {"role": "system", "content": "  You answer briefly. "},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! "},
        {"role": "user", "content": "Name a prime\nnumber."},
    ],
]


def main():
    meta = gguf_metadata(sys.argv[1])
    tokens = meta["tokenizer.ggml.tokens"]
    smollm = {
        "name": "SmolLM2-135M-Instruct (GGUF tokenizer.chat_template)",
        "template": meta["tokenizer.chat_template"],
        "bos_token": tokens[meta["tokenizer.ggml.bos_token_id"]],
        "eos_token": tokens[meta["tokenizer.ggml.eos_token_id"]],
    }
    llama = {"name": "Llama-3 style", "template": LLAMA_STYLE, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    out = []
    for t in [smollm, llama]:
        cases = []
        for messages in CONVERSATIONS:
            for gen in [False, True]:
                cases.append(
                    {
                        "messages": messages,
                        "add_generation_prompt": gen,
                        "expected": render(t["template"], messages, gen, t["bos_token"], t["eos_token"]),
                    }
                )
        bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        try:
            render(t["template"], bad, True, t["bos_token"], t["eos_token"])
            cases.append({"messages": bad, "add_generation_prompt": True, "expected": render(t["template"], bad, True, t["bos_token"], t["eos_token"])})
        except jinja2.exceptions.TemplateError as e:
            cases.append({"messages": bad, "add_generation_prompt": True, "error": str(e)})
        out.append({**t, "cases": cases})
    json.dump({"jinja2": jinja2.__version__, "templates": out}, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
