#!/usr/bin/env python3
"""PyTorch (CPU) peer of bench/bench_train_block.cpp: one clustered LLaMA block's forward + backward
as the reference ClusComp trains it, on the weights, codes and inputs that the C++ side wrote.

    /usr/bin/python3 bench/train_block_torch.py DIR THREADS WARMUP REPS

DIR holds (little-endian, row-major) config.json, attn_norm.f32 / ffn_norm.f32 (hidden),
<layer>.centroids.f32 (S, K, d), <layer>.codes.i32 (in * out_pad / d) for layer in q, k, v, o,
gate, up, down, and for every n in config["ns"] x_<n>.f32 / dy_<n>.f32 (n, hidden).

Every step does what a user of PyTorch writes for codebook finetuning: rebuild each dense weight
from its centroids by a gather (W = C[codes], differentiable in C; CLUSCOMP.md §1 geometry: Wt
(in, out_pad) cut row-major into d-vectors, codebook s owns input rows [floor(s*in/S),
floor((s+1)*in/S))), run the Hugging Face LLaMA block (RMSNorm, rotate_half RoPE with fp32
cos/sin tables built once, repeat_kv GQA, matmul + causal mask + softmax attention since torch
1.13 has no scaled_dot_product_attention, SiLU-gated MLP), loss = sum(y * dy), backward to the
centroids (the block input does not require grad: block-wise calibration needs no dx). float32,
torch.set_num_threads(THREADS). WARMUP untimed steps, then REPS timed ones per n.

Writes DIR/torch_y_<n>.f32 (the block output of the last step), DIR/torch_dq_<n>.f32 (the q_proj
centroid gradient of one step) and DIR/torch_result.json LAST (temporary + rename):
{torch_version, threads, "<n>": {fwd_ms: [...], bwd_ms: [...], total_ms: [...]}}.
"""
import json
import math
import os
import sys
import time

if __name__ == "__main__" and len(sys.argv) == 5:  # BLAS threads are fixed when torch loads it
    os.environ["OMP_NUM_THREADS"] = sys.argv[2]
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[2]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LAYERS = ["q", "k", "v", "o", "gate", "up", "down"]


def load(d, name, dtype, shape):
    a = np.fromfile(os.path.join(d, name), dtype=dtype)
    return torch.from_numpy(a.reshape(shape))


def rebuild(cent, codes2, book, out, d):
    """W (out, in) from centroids (S, K, d) and codes (in, out_pad/d); differentiable in cent."""
    inp, per_row = codes2.shape
    vec = cent[book, codes2]  # (in, per_row, d)
    return vec.reshape(inp, per_row * d)[:, :out].t()


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Block:
    def __init__(self, d):
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        self.c = c
        self.hidden, self.heads, self.kv_heads = c["hidden"], c["heads"], c["kv_heads"]
        self.hd, self.eps = c["head_dim"], c["rms_norm_eps"]
        self.attn_norm = load(d, "attn_norm.f32", np.float32, (self.hidden,))
        self.ffn_norm = load(d, "ffn_norm.f32", np.float32, (self.hidden,))
        self.cent, self.codes, self.book, self.out = {}, {}, {}, {}
        for name in LAYERS:
            m = c["matrices"][name]
            out, inp, dd, k, s = m["out"], m["in"], m["d"], m["k"], m["s"]
            per_row = (out + dd - 1) // dd
            self.cent[name] = load(d, name + ".centroids.f32", np.float32, (s, k, dd)).clone().requires_grad_(True)
            self.codes[name] = load(d, name + ".codes.i32", np.int32, (inp, per_row)).long()
            rows = torch.arange(inp)
            self.book[name] = torch.div(rows * s, inp, rounding_mode="floor").unsqueeze(1).expand(inp, per_row)
            self.out[name] = out
        self.rope_cache = {}

    def rope(self, n):
        if n not in self.rope_cache:  # HF's LlamaRotaryEmbedding caches its fp32 tables
            inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, self.hd, 2).float() / self.hd))
            freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            mask = torch.full((n, n), float("-inf")).triu(1)
            self.rope_cache[n] = (emb.cos()[None], emb.sin()[None], mask)
        return self.rope_cache[n]

    def forward(self, x):
        n = x.shape[0]
        w = {name: rebuild(self.cent[name], self.codes[name], self.book[name], self.out[name],
                           self.cent[name].shape[2]) for name in LAYERS}
        cos, sin, mask = self.rope(n)
        h = rms_norm(x, self.attn_norm, self.eps)
        q = F.linear(h, w["q"]).view(n, self.heads, self.hd).transpose(0, 1)
        k = F.linear(h, w["k"]).view(n, self.kv_heads, self.hd).transpose(0, 1)
        v = F.linear(h, w["v"]).view(n, self.kv_heads, self.hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        scores = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(self.hd) + mask
        p = F.softmax(scores, dim=-1, dtype=torch.float32)
        a = torch.matmul(p, v).transpose(0, 1).reshape(n, self.heads * self.hd)
        x1 = x + F.linear(a, w["o"])
        h2 = rms_norm(x1, self.ffn_norm, self.eps)
        m = F.silu(F.linear(h2, w["gate"])) * F.linear(h2, w["up"])
        return x1 + F.linear(m, w["down"])


def main():
    d, threads, warmup, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    b = Block(d)
    result = {"torch_version": torch.__version__, "threads": threads}
    for n in b.c["ns"]:
        x = load(d, f"x_{n}.f32", np.float32, (n, b.hidden))
        dy = load(d, f"dy_{n}.f32", np.float32, (n, b.hidden))
        fwd, bwd = [], []
        for it in range(warmup + reps):
            for c in b.cent.values():
                c.grad = None
            t0 = time.perf_counter()
            y = b.forward(x)
            loss = (y * dy).sum()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            if it >= warmup:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
        y.detach().numpy().astype(np.float32).tofile(os.path.join(d, f"torch_y_{n}.f32"))
        b.cent["q"].grad.numpy().astype(np.float32).tofile(os.path.join(d, f"torch_dq_{n}.f32"))
        result[str(n)] = {"fwd_ms": fwd, "bwd_ms": bwd, "total_ms": [f + g for f, g in zip(fwd, bwd)]}
    tmp = os.path.join(d, "torch_result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(d, "torch_result.json"))


if __name__ == "__main__":
    main()
