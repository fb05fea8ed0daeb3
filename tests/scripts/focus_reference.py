#!/usr/bin/env python3
"""An independent FocusLLM reference, written from the specification
(../shared/docs/focusllm-spec.md §3) in plain torch on top of transformers' Llama modules.

It decodes chunk by chunk (no batching), keeps candidate keys before RoPE and re-rotates
them to positions 0..C-1 in the local pass, re-feeds the previous candidate at each step,
and recomputes the whole local window every step, exactly as the reference code does.

Run by hand (never by CI) after make_fixtures.py tiny:
    /tmp/ref/bin/python tests/scripts/focus_reference.py
Writes tests/fixtures/tiny-focus-candidates.safetensors (candidate weights that differ from
the base ones) and tests/fixtures/tiny-focus-ref.safetensors (+ .json with the settings).
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")
torch.set_grad_enabled(False)
BOS = 256


class Focus:
    def __init__(self, model, beacon):
        self.m = model
        self.cfg = model.config
        self.beacon = beacon  # layer -> {"q": W, "k": W, "v": W, "o": W} in [out, in]

    def rope(self, x, positions):
        pos = torch.tensor([positions])
        return self.m.model.rotary_emb(x, pos)

    def run(self, ids, positions, past, cand_last):
        """ids: list; positions: list; past: per layer (k_rot, v) [1, hkv, P, d] or None.
        Returns final hidden [T, d] and per layer (k_raw, k_rot, v) of the new rows."""
        m, cfg = self.m.model, self.cfg
        h, hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        x = m.embed_tokens(torch.tensor([ids]))
        t = len(ids)
        cos, sin = self.rope(x, positions)
        new = []
        for li, layer in enumerate(m.layers):
            a = layer.self_attn
            hs = layer.input_layernorm(x)

            def proj(name, base):
                out = base(hs)
                if cand_last:
                    out[:, -1] = hs[:, -1] @ self.beacon[li][name].T
                return out

            q = proj("q", a.q_proj).view(1, t, h, d).transpose(1, 2)
            k = proj("k", a.k_proj).view(1, t, hkv, d).transpose(1, 2)
            v = proj("v", a.v_proj).view(1, t, hkv, d).transpose(1, 2)
            q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
            new.append((k, k_rot, v))
            if past is not None:
                k_all = torch.cat([past[li][0], k_rot], 2)
                v_all = torch.cat([past[li][1], v], 2)
            else:
                k_all, v_all = k_rot, v
            g = h // hkv
            k_all = k_all.repeat_interleave(g, dim=1)
            v_all = v_all.repeat_interleave(g, dim=1)
            p = k_all.shape[2] - t
            scores = q_rot @ k_all.transpose(2, 3) / d ** 0.5
            mask = torch.ones(t, p + t, dtype=torch.bool).tril(diagonal=p)
            scores = scores.masked_fill(~mask, float("-inf"))
            o = (scores.softmax(-1) @ v_all).transpose(1, 2).reshape(1, t, h * d)
            out = a.o_proj(o)
            if cand_last:
                out[:, -1] = o[:, -1] @ self.beacon[li]["o"].T
            x = x + out
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return m.norm(x)[0], new

    def logits(self, hidden_row):
        return self.m.lm_head(hidden_row)

    def generate(self, x, W, S, cap, steps):
        L = len(x)
        M = L - W
        chunks = [x[s:min(s + S, M)] for s in range(0, M, S)] if M > 0 else []
        C = len(chunks)
        p = min(cap, S, W)
        prompt = [BOS] + x[L - p:]
        caches, cands = [], []
        for ch in chunks:  # sequential, one chunk at a time
            ids = ch + prompt
            n = len(ids)
            _, new = self.run(ids, list(range(n)), None, True)
            caches.append([(kr[:, :, :-1], v[:, :, :-1]) for (_, kr, v) in new])
            cands.append([(k[:, :, -1:], v[:, :, -1:]) for (k, _, v) in new])
        local = x[M:] if x[M] == BOS else [BOS] + x[M:]
        out_logits, tokens = [], []
        last = x[-1]
        for t in range(steps + 1):
            if t > 0:
                g = tokens[-1]
                new_cands = []
                for j in range(C):
                    P = caches[j][0][0].shape[2]
                    _, new = self.run([last, g], [P, P + 1], caches[j], True)
                    caches[j] = [(torch.cat([ck, kr[:, :, :1]], 2), torch.cat([cv, v[:, :, :1]], 2))
                                 for (ck, cv), (_, kr, v) in zip(caches[j], new)]
                    new_cands.append([(k[:, :, 1:], v[:, :, 1:]) for (k, _, v) in new])
                cands = new_cands
                last = g
                local = local + [g]
            if C > 0:
                past = []
                for li in range(self.cfg.num_hidden_layers):
                    k = torch.cat([cands[j][li][0] for j in range(C)], 2)  # [1, hkv, C, d], pre-RoPE
                    v = torch.cat([cands[j][li][1] for j in range(C)], 2)
                    cos, sin = self.rope(k, list(range(C)))
                    _, k_rot = apply_rotary_pos_emb(k, k, cos, sin)
                    past.append((k_rot, v))
                hid, _ = self.run(local, list(range(C, C + len(local))), past, False)
            else:
                hid, _ = self.run(local, list(range(len(local))), None, False)
            lg = self.logits(hid[-1])
            out_logits.append(lg)
            tokens.append(int(lg.argmax()))
        return torch.stack(out_logits), tokens[:steps], C


SETTINGS = [  # (W, S, prompt cap)
    (32, 32, 512),
    (48, 20, 512),   # short last chunk (102 = 5 x 20 + 2)
    (40, 64, 512),   # p = W = 40 < S
    (24, 16, 8),     # p capped at 8
    (150, 16, 512),  # input fits in the window: plain decoding
]


def main():
    model = LlamaForCausalLM.from_pretrained(os.path.join(FIX, "tiny-llama"), dtype=torch.float32).eval()
    torch.manual_seed(99)
    beacon, tensors = {}, {}
    for li, layer in enumerate(model.model.layers):
        a = layer.self_attn
        beacon[li] = {}
        for name, base in [("q", a.q_proj), ("k", a.k_proj), ("v", a.v_proj), ("o", a.o_proj)]:
            w = base.weight + 0.08 * torch.randn_like(base.weight)
            beacon[li][name] = w
            tensors[f"model.layers.{li}.self_attn.beacon_{name}_proj.weight"] = w.contiguous()
    save_file(tensors, os.path.join(FIX, "tiny-focus-candidates.safetensors"), metadata={"format": "pt"})
    focus = Focus(model, beacon)
    g = torch.Generator().manual_seed(5)
    x = [BOS] + torch.randint(0, 256, (149,), generator=g).tolist()
    # The reference's own layer code must agree with transformers on plain decoding.
    hid, _ = focus.run(x, list(range(len(x))), None, False)
    err = (focus.logits(hid) - model(torch.tensor([x])).logits[0]).abs().max().item()
    assert err < 1e-4, err
    print("plain forward vs transformers: max error", err)
    out, meta = {"input_ids": torch.tensor(x, dtype=torch.int32)}, []
    steps = 6
    for i, (W, S, cap) in enumerate(SETTINGS):
        logits, tokens, C = focus.generate(x, W, S, cap, steps)
        out[f"logits.{i}"] = logits.contiguous()
        out[f"greedy.{i}"] = torch.tensor(tokens, dtype=torch.int32)
        meta.append({"local_window": W, "chunk_len": S, "prompt_cap": cap, "chunks": C, "steps": steps})
        print((W, S, cap), "chunks", C, "greedy", tokens)
    save_file(out, os.path.join(FIX, "tiny-focus-ref.safetensors"))
    with open(os.path.join(FIX, "tiny-focus-ref.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
