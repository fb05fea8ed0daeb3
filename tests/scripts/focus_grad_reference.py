#!/usr/bin/env python3
"""Gradients of the FocusLLM training losses with respect to every candidate projection,
by PyTorch autograd on the independent reference (focus_reference.py), for the gradient
check in tests/tests/training.rs.

The loss is computed the way the official code trains (spec §4.3): every chunk runs in full,
with gradients, one at a time (`chunk ‖ BOS ‖ prompt`, the last token through the candidate
projections in every layer); the local pass `[BOS] ‖ span` attends to the candidates' keys,
re-rotated to positions 0..C-1; the loss is the cross-entropy of the token after the span
at the last local row. None of the Rust shortcuts (chunk keys without autodiff, one
candidate row per chunk) is used here.

Run by hand (never by CI), with torch and transformers installed:
    /tmp/ref/bin/python tests/scripts/focus_grad_reference.py
Reads tests/fixtures/tiny-llama and tiny-focus-candidates.safetensors; writes
tests/fixtures/tiny-focus-grad.safetensors.
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from focus_reference import BOS, FIX, Focus

# (kind, start, len, memory_end, chunk_len): one continuation and two repetition examples
# of sequence(200, 3), as in training.rs; prompt length p = min(512, S, len).
EXAMPLES = [
    ("continuation", 97, 40, 97, 16),
    ("repetition", 20, 31, 201, 24),
    ("repetition", 0, 45, 201, 64),
]


def sequence(n, salt):
    """The deterministic pseudo-text of training.rs: BOS, then n byte tokens."""
    return [BOS] + [32 + (i * 7 + salt * 13 + (i * i) % 11) % 90 for i in range(n)]


def example_loss(focus, x, start, length, memory_end, chunk_len):
    end = start + length
    p = min(512, chunk_len, length)
    prompt = [BOS] + x[end - p:end]
    cands = []
    for lo in range(0, memory_end, chunk_len):
        ids = x[lo:min(lo + chunk_len, memory_end)] + prompt
        _, new = focus.run(ids, list(range(len(ids))), None, True)
        cands.append([(k[:, :, -1:], v[:, :, -1:]) for (k, _, v) in new])
    c = len(cands)
    past = []
    for li in range(focus.cfg.num_hidden_layers):
        k = torch.cat([cands[j][li][0] for j in range(c)], 2)  # pre-RoPE
        v = torch.cat([cands[j][li][1] for j in range(c)], 2)
        cos, sin = focus.rope(k, list(range(c)))
        _, k_rot = apply_rotary_pos_emb(k, k, cos, sin)
        past.append((k_rot, v))
    span = x[start:end]
    local = span if span[0] == BOS else [BOS] + span
    hid, _ = focus.run(local, list(range(c, c + len(local))), past, False)
    logits = focus.logits(hid[-1])
    return torch.nn.functional.cross_entropy(logits[None], torch.tensor([x[end]]))


def main():
    torch.set_grad_enabled(True)
    model = LlamaForCausalLM.from_pretrained(os.path.join(FIX, "tiny-llama"), dtype=torch.float64).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    stored = load_file(os.path.join(FIX, "tiny-focus-candidates.safetensors"))
    n_layers = model.config.num_hidden_layers
    x = sequence(200, 3)
    out = {}
    for e, (kind, start, length, memory_end, chunk_len) in enumerate(EXAMPLES):
        beacon = {
            li: {
                n: stored[f"model.layers.{li}.self_attn.beacon_{n}_proj.weight"].double().requires_grad_(True)
                for n in "qkvo"
            }
            for li in range(n_layers)
        }
        loss = example_loss(Focus(model, beacon), x, start, length, memory_end, chunk_len)
        loss.backward()
        out[f"loss.{e}"] = loss.detach().float().reshape(1)
        for li in range(n_layers):
            for n in "qkvo":
                g = beacon[li][n].grad
                out[f"grad.{e}.{li}.{n}"] = (torch.zeros_like(beacon[li][n]) if g is None else g).float().contiguous()
        print(kind, (start, length, memory_end, chunk_len), "loss", loss.item())
    save_file(out, os.path.join(FIX, "tiny-focus-grad.safetensors"))


if __name__ == "__main__":
    main()
