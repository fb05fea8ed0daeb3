#!/usr/bin/env python3
"""Reference fixtures for the decoder parity tests, computed with transformers.

Run by hand (never by CI), from the repository root, after scripts/fetch-assets.sh:

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.15.0 transformers==5.23.0 \
        gguf==0.19.0 safetensors==0.8.0 numpy tokenizers accelerate
    /tmp/ref/bin/python tests/scripts/make_fixtures.py

Writes tests/fixtures/tiny-llama/ (a seeded random GQA Llama as an HF directory, plus a
sharded bf16 copy), tests/fixtures/tiny-llama-ref.safetensors and tests/fixtures/smollm2-ref.*.
The SmolLM2 reference loads the GGUF through transformers' own GGUF integration
(dequantisation and Q/K un-permutation done by transformers and gguf-py, not by us).
"""
import copy
import json
import os
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")
torch.set_grad_enabled(False)


def byte_tokenizer(path):
    """Byte-level tokenizer: ids 0..255 are the bytes (GPT-2 byte alphabet), no merges."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # GPT-2's byte -> unicode table, so that id == byte value.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = {b: chr(c) for b, c in zip(bs, cs)}
    assert set(table.values()) == set(alphabet)
    vocab = {table[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<s>", "</s>", "<pad>", "<unk>"])  # ids 256..259
    tok.save(path)


def tiny():
    torch.manual_seed(20240821)
    cfg = LlamaConfig(
        vocab_size=260, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=256, eos_token_id=257, attention_bias=False, mlp_bias=False,
        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    model = LlamaForCausalLM(cfg).float().eval()
    # Default init gives near-zero attention logits; widen the weights so attention and
    # RoPE matter and errors would show.
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        else:
            p.copy_(0.15 * torch.randn_like(p))
    out = os.path.join(FIX, "tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    byte_tokenizer(os.path.join(out, "tokenizer.json"))
    # The same weights, bf16 and sharded: exercises the index and the cast on load.
    shard = os.path.join(FIX, "tiny-llama-bf16-sharded")
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(shard, safe_serialization=True, max_shard_size="60KB")
    byte_tokenizer(os.path.join(shard, "tokenizer.json"))
    bf16_model = LlamaForCausalLM.from_pretrained(shard, torch_dtype=torch.float32).eval()

    g = torch.Generator().manual_seed(7)
    ids = torch.cat([torch.full((2, 1), 256), torch.randint(0, 256, (2, 40), generator=g)], dim=1)
    o = model(ids, output_hidden_states=True)
    tensors = {"input_ids": ids.to(torch.int32).contiguous(), "logits": o.logits.contiguous()}
    for i, h in enumerate(o.hidden_states):
        tensors[f"hidden.{i}"] = h.contiguous()
    greedy = model.generate(ids[:1, :12], max_new_tokens=20, do_sample=False,
                            pad_token_id=258, eos_token_id=None, min_new_tokens=20)
    tensors["greedy"] = greedy[0].to(torch.int32).contiguous()
    tensors["logits_bf16"] = bf16_model(ids).logits.contiguous()
    save_file(tensors, os.path.join(FIX, "tiny-llama-ref.safetensors"))
    print("tiny: logits", tuple(o.logits.shape), "greedy", greedy[0].tolist())


PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
]


def smollm2():
    assets = os.path.join(ROOT, ".assets")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(assets, gguf_file=name)
    # transformers' GGUF converter ignores `tokenizer.ggml.pre`; SmolLM2's own tokenizer (and
    # llama.cpp's `smollm` pre-type) splits digits one by one before the GPT-2 byte-level
    # regex. Restore that pipeline so the reference ids are the model's real ones (they
    # differ where several spaces precede a digit).
    from tokenizers import pre_tokenizers as pt
    tok.backend_tokenizer.pre_tokenizer = pt.Sequence(
        [pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(assets, gguf_file=name, torch_dtype=torch.float32).eval()
    tensors, meta = {}, {"prompts": PROMPTS, "books": {}}
    for i, p in enumerate(PROMPTS):
        ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
        logits = model(ids).logits[0, -1]
        gen = model.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=None,
                             pad_token_id=2, min_new_tokens=16)[0, ids.shape[1]:]
        tensors[f"ids.{i}"] = ids[0].to(torch.int32).contiguous()
        tensors[f"logits.{i}"] = logits.contiguous()
        tensors[f"greedy.{i}"] = gen.to(torch.int32).contiguous()
        print(repr(p), "->", repr(tok.decode(gen)))
    for book in ("alice29", "plrabn12", "lcet10", "asyoulik"):
        text = open(os.path.join(assets, "books", book + ".txt"), encoding="utf-8").read()
        ids = tok(text, add_special_tokens=False).input_ids
        h = 0xCBF29CE484222325
        for b in struct.pack(f"<{len(ids)}I", *ids):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        meta["books"][book] = {"tokens": len(ids), "fnv1a64_u32le": f"{h:016x}", "first": ids[:64]}
        print(book, len(ids))
    save_file(tensors, os.path.join(FIX, "smollm2-ref.safetensors"))
    with open(os.path.join(FIX, "smollm2-ref.json"), "w") as f:
        json.dump(meta, f, indent=1)


def quants():
    """Random blocks of each GGML type and their dequantisation by gguf-py."""
    from gguf import GGMLQuantizationType as T, quants as q
    rng = np.random.default_rng(3)
    out = {}
    for name, ty, block, nbytes, f16_at in [
        ("q4_0", T.Q4_0, 32, 18, [0]), ("q4_1", T.Q4_1, 32, 20, [0, 2]), ("q8_0", T.Q8_0, 32, 34, [0]),
        ("q4_k", T.Q4_K, 256, 144, [0, 2]), ("q6_k", T.Q6_K, 256, 210, [208]),
        ("f16", T.F16, 1, 2, []), ("bf16", T.BF16, 1, 2, []),
    ]:
        nblocks = 8 if block > 1 else 512
        raw = rng.integers(0, 256, size=(nblocks, nbytes), dtype=np.uint8)
        for at in f16_at:  # keep scales finite and moderate
            raw[:, at:at + 2] = np.frombuffer(rng.uniform(-2, 2, nblocks).astype(np.float16).tobytes(), np.uint8).reshape(nblocks, 2)
        if name == "bf16":
            raw[:, 1] = rng.integers(0x3c, 0x42, size=nblocks)  # exponent of moderate values
        if name == "f16":
            raw[:, 1] = rng.integers(0x30, 0x48, size=nblocks)
        vals = q.dequantize(raw.reshape(-1), ty).astype(np.float32).reshape(-1)
        out[f"{name}.raw"] = torch.from_numpy(raw.reshape(-1).copy())
        out[f"{name}.f32"] = torch.from_numpy(vals.copy())
        print(name, vals.shape, float(np.abs(vals).max()))
    save_file(out, os.path.join(FIX, "gguf-quants.safetensors"))


if __name__ == "__main__":
    os.makedirs(FIX, exist_ok=True)
    which = sys.argv[1:] or ["tiny", "quants", "smollm2"]
    if "quants" in which:
        quants()
    if "tiny" in which:
        tiny()
    if "smollm2" in which:
        smollm2()
