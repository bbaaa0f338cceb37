#!/usr/bin/env python3
"""A clustered LLaMA block's forward and codebook gradients by PyTorch autograd (float64), as an
independent check of cluscomp's hand-written backward (model/train_block.hpp).

    python3 tests/model/train_block_torch_ref.py OUTDIR

Written from the Hugging Face LLaMA definition (modeling_llama.py: RMSNorm, rotate_half RoPE,
repeat_kv GQA, causal softmax attention, SiLU-gated MLP) and from CLUSCOMP.md §1 for the codebook
geometry: Wt (in, out_pad) is cut row-major into d-vectors, vector v = i*(out_pad/d) + j holds
W[j*d .. j*d+d-1, i]; codebook s owns input rows [floor(s*in/S), floor((s+1)*in/S)); the dense
weight is rebuilt by a gather (as the reference's forward does) and autograd scatters the
gradient back to the centroids. Nothing here shares code with cluscomp.

The block is random (numpy seed SEED) and small, but every code path is exercised: GQA (4 query
heads on 2 kv heads), q/k/v biases (Qwen2 style), d in {2, 3, 4, 8} (d = 3 pads the output
dimension), S = 2 codebooks on two matrices, a dense (frozen) v projection next to codebook ones.
Loss = sum(y * dy) for a random dy, so the gradients are exactly the vector-Jacobian products
dL/dC = J^T dy that cluscomp's backward computes.

Writes OUTDIR/*.f32 / *.i32 (little-endian, row-major) and OUTDIR/manifest.json LAST (temporary +
rename), so its presence means the dump is complete.
"""
import json
import os
import sys

import numpy as np
import torch

SEED = 20261124
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER = 32, 4, 2, 8, 48
N = 11
EPS = 1e-5
THETA = 10000.0
# name: (out, in, d, K, S); None = dense
MATRICES = {
    "q": (HEADS * HEAD_DIM, HIDDEN, 4, 16, 1),
    "k": (KV_HEADS * HEAD_DIM, HIDDEN, 3, 8, 2),
    "v": None,
    "o": (HIDDEN, HEADS * HEAD_DIM, 2, 16, 1),
    "gate": (INTER, HIDDEN, 4, 32, 2),
    "up": (INTER, HIDDEN, 8, 16, 1),
    "down": (HIDDEN, INTER, 4, 32, 1),
}
DENSE_SHAPES = {"v": (KV_HEADS * HEAD_DIM, HIDDEN)}
BIASES = {"q": HEADS * HEAD_DIM, "k": KV_HEADS * HEAD_DIM, "v": KV_HEADS * HEAD_DIM}


def rebuild(cent, codes, out, inp, d, k, s):
    """Dense W (out, in) from centroids (S, K, d) and codes (in * out_pad / d), differentiable in cent."""
    out_pad = (out + d - 1) // d * d
    per_row = out_pad // d
    rows = torch.arange(inp)
    book = torch.div(rows * s, inp, rounding_mode="floor")  # codebook of each input row
    codes2 = codes.view(inp, per_row)
    vec = cent[book.unsqueeze(1).expand(inp, per_row), codes2]  # (in, per_row, d)
    wt = vec.reshape(inp, out_pad)[:, :out]
    return wt.t()


def rms_norm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def rope(x, heads):  # x (n, heads*hd), rotate_half convention
    n = x.shape[0]
    inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM))
    ang = torch.arange(n, dtype=torch.float64).unsqueeze(1) * inv.unsqueeze(0)  # (n, hd/2)
    cos = torch.cat([ang.cos(), ang.cos()], -1).unsqueeze(1)
    sin = torch.cat([ang.sin(), ang.sin()], -1).unsqueeze(1)
    xh = x.view(n, heads, HEAD_DIM)
    half = HEAD_DIM // 2
    rot = torch.cat([-xh[..., half:], xh[..., :half]], -1)
    return (xh * cos + rot * sin).reshape(n, heads * HEAD_DIM)


def block(x, p):
    w = p["w"]
    h = rms_norm(x, p["attn_norm"])
    q = h @ w["q"].t() + p["bias"]["q"]
    k = h @ w["k"].t() + p["bias"]["k"]
    v = h @ w["v"].t() + p["bias"]["v"]
    q, k = rope(q, HEADS), rope(k, KV_HEADS)
    qh = q.view(N, HEADS, HEAD_DIM).transpose(0, 1)
    rep = HEADS // KV_HEADS
    kh = k.view(N, KV_HEADS, HEAD_DIM).transpose(0, 1).repeat_interleave(rep, 0)
    vh = v.view(N, KV_HEADS, HEAD_DIM).transpose(0, 1).repeat_interleave(rep, 0)
    scores = qh @ kh.transpose(1, 2) / np.sqrt(HEAD_DIM)
    mask = torch.triu(torch.ones(N, N, dtype=torch.bool), 1)
    scores = scores.masked_fill(mask, float("-inf"))
    att = torch.softmax(scores, -1) @ vh  # (heads, n, hd)
    att = att.transpose(0, 1).reshape(N, HEADS * HEAD_DIM)
    x1 = x + att @ w["o"].t()
    h2 = rms_norm(x1, p["ffn_norm"])
    a = torch.nn.functional.silu(h2 @ w["gate"].t()) * (h2 @ w["up"].t())
    return x1 + a @ w["down"].t()


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files = {}

    def save(name, arr, dtype):
        a = np.ascontiguousarray(arr, dtype=dtype)
        fn = name + (".f32" if dtype == np.float32 else ".i32")
        a.tofile(os.path.join(out_dir, fn))
        files[name] = fn

    # Inputs are stored as float32 and used in float64 from those exact values, so both sides
    # start from identical numbers.
    def f32(shape, scale, offset=0.0):
        return (offset + scale * rng.standard_normal(shape)).astype(np.float32)

    attn_norm, ffn_norm = f32(HIDDEN, 0.1, 1.0), f32(HIDDEN, 0.1, 1.0)
    save("attn_norm", attn_norm, np.float32)
    save("ffn_norm", ffn_norm, np.float32)
    matrices, cents, codes_t, dense = {}, {}, {}, {}
    for name, m in MATRICES.items():
        if m is None:
            wd = f32(DENSE_SHAPES[name], 0.2)
            save(name + ".weight", wd, np.float32)
            dense[name] = torch.tensor(wd, dtype=torch.float64)
            matrices[name] = {"dense": True, "out": DENSE_SHAPES[name][0], "in": DENSE_SHAPES[name][1]}
            continue
        out, inp, d, k, s = m
        cent = f32((s, k, d), 0.2)
        out_pad = (out + d - 1) // d * d
        codes = rng.integers(0, k, size=inp * out_pad // d).astype(np.int32)
        codes[0], codes[-1] = 0, k - 1
        save(name + ".centroids", cent, np.float32)
        save(name + ".codes", codes, np.int32)
        cents[name] = torch.tensor(cent, dtype=torch.float64, requires_grad=True)
        codes_t[name] = torch.tensor(codes, dtype=torch.int64)
        matrices[name] = {"dense": False, "out": out, "in": inp, "d": d, "k": k, "s": s}
    bias = {}
    for name, size in BIASES.items():
        b = f32(size, 0.1)
        save(name + ".bias", b, np.float32)
        bias[name] = torch.tensor(b, dtype=torch.float64)
    x_np, dy_np = f32((N, HIDDEN), 1.0), f32((N, HIDDEN), 1.0)
    save("x", x_np, np.float32)
    save("dy", dy_np, np.float32)

    x = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    w = dict(dense)
    for name, m in matrices.items():
        if not m["dense"]:
            w[name] = rebuild(cents[name], codes_t[name], m["out"], m["in"], m["d"], m["k"], m["s"])
    p = {"w": w, "bias": bias, "attn_norm": torch.tensor(attn_norm, dtype=torch.float64),
         "ffn_norm": torch.tensor(ffn_norm, dtype=torch.float64)}
    y = block(x, p)
    (y * torch.tensor(dy_np, dtype=torch.float64)).sum().backward()
    save("y", y.detach().numpy(), np.float32)
    save("dx", x.grad.numpy(), np.float32)
    for name in cents:
        save(name + ".dcentroids", cents[name].grad.numpy(), np.float32)

    manifest = {
        "torch_version": torch.__version__,
        "seed": SEED,
        "config": {"hidden": HIDDEN, "heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM,
                   "intermediate": INTER, "rms_norm_eps": EPS, "rope_theta": THETA, "n": N,
                   "qkv_bias": True},
        "matrices": matrices,
        "files": files,
        "note": "float64 autograd; stored as float32; loss = sum(y * dy)",
    }
    tmp = os.path.join(out_dir, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    print(f"train_block_torch_ref: torch {torch.__version__}, wrote {len(files)} arrays to {out_dir}")


if __name__ == "__main__":
    main()
