#!/usr/bin/env python3
"""PyTorch (CPU) peer of bench_runtime: the same LLaMA forward as a plain torch module, on the same
weights dequantised to fp32 by the PyPI `gguf` package, timed with the same protocol.

    python bench/runtime_torch.py MODEL.gguf OUTDIR THREADS PREFILL DECODE REPS

Protocol (bench/bench_runtime.cpp's): prompt ids[i] = (i * 7919 + 13) % vocab; prefill = forward of
PREFILL tokens from an empty cache + the last position's logits; decode = DECODE single-token
forwards from a 1-token prompt, logits each step, argmax feeding the next; a warm-up, then REPS
repetitions (the caller takes medians). torch.set_num_threads(THREADS) (and OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS; CLUSCOMP_TORCH_BLAS_THREADS overrides the BLAS's), inference mode, fp32. Debian's python3-torch does its matmuls through the
libblas.so.3 alternative: install libopenblas0-pthread, or it is the reference netlib BLAS.
Writes (result.json LAST):
  OUTDIR/check.logits.f32  every position's logits of the first CHECK_TOKENS prompt ids, (n, vocab)
                           f32, for bench_runtime's sanity check against our forward
  OUTDIR/result.json       {torch_version, threads, check_tokens, vocab, prefill_s: [..], decode_s: [..]}
"""
import json
import os
import sys
import time

if __name__ == "__main__" and len(sys.argv) == 7:  # BLAS threads are fixed when torch loads it
    os.environ["OMP_NUM_THREADS"] = sys.argv[3]
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ.get("CLUSCOMP_TORCH_BLAS_THREADS", sys.argv[3])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGUFReader
from gguf.quants import dequantize

CHECK_TOKENS = 16


def field_value(r, key):
    f = r.fields[key]
    if hasattr(f, "contents"):
        return f.contents()
    return f.parts[f.data[0]][0]


class TorchLlama(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        r = GGUFReader(path)
        arch = field_value(r, "general.architecture")
        if arch not in ("llama", "mistral"):
            raise SystemExit(f"unsupported architecture {arch}")
        g = lambda k, d=None: field_value(r, f"{arch}.{k}") if f"{arch}.{k}" in r.fields else d
        self.n_layers = int(g("block_count"))
        self.n_heads = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_heads))
        self.hidden = int(g("embedding_length"))
        self.head_dim = int(g("attention.key_length", self.hidden // self.n_heads))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        theta = float(g("rope.freq_base", 10000.0))
        self.context = int(g("context_length"))
        w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            w[t.name] = a.reshape([int(x) for x in reversed(t.shape)])

        # GGUF q/k rows interleave each head's rotary halves; back to HF's rotate_half layout.
        def unpermute(m, heads):
            shp = m.shape
            return m.reshape(heads, shp[0] // heads // 2, 2, *shp[1:]).swapaxes(1, 2).reshape(shp)

        for i in range(self.n_layers):
            w[f"blk.{i}.attn_q.weight"] = unpermute(w[f"blk.{i}.attn_q.weight"], self.n_heads)
            w[f"blk.{i}.attn_k.weight"] = unpermute(w[f"blk.{i}.attn_k.weight"], self.n_kv)
        t = lambda name: torch.from_numpy(np.ascontiguousarray(w[name]))
        self.embed = t("token_embd.weight")
        self.lm_head = t("output.weight") if "output.weight" in w else self.embed
        self.out_norm = t("output_norm.weight")
        self.layers = []
        for i in range(self.n_layers):
            p = f"blk.{i}."
            self.layers.append({k: t(p + k + ".weight") for k in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                "ffn_down")})
        self.vocab = self.embed.shape[0]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))

    def make_cache(self, n):
        return {"len": 0, "kv": [(torch.empty(self.n_kv, n, self.head_dim), torch.empty(self.n_kv, n, self.head_dim))
                                 for _ in range(self.n_layers)]}

    def rms_norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def rope(self, x, cos, sin):
        half = self.head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids, cache, all_logits=False):
        T, pos0 = len(ids), cache["len"]
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv
        group = nh // nkv
        ang = torch.outer(torch.arange(pos0, pos0 + T, dtype=torch.float64), self.inv_freq)
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        L = pos0 + T
        mask = None
        if T > 1:
            mask = torch.full((T, L), float("-inf")).triu(pos0 + 1)
        x = self.embed[torch.as_tensor(ids)]
        for lw, (kc, vc) in zip(self.layers, cache["kv"]):
            h = self.rms_norm(x, lw["attn_norm"])
            q = (h @ lw["attn_q"].T).view(T, nh, hd).transpose(0, 1)
            k = (h @ lw["attn_k"].T).view(T, nkv, hd).transpose(0, 1)
            v = (h @ lw["attn_v"].T).view(T, nkv, hd).transpose(0, 1)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            kc[:, pos0:L] = k
            vc[:, pos0:L] = v
            # GQA: query heads g*group .. g*group+group-1 read kv head g.
            qg = q.reshape(nkv, group * T, hd)
            s = torch.bmm(qg, kc[:, :L].transpose(1, 2)) * (1.0 / hd ** 0.5)
            s = s.view(nkv, group, T, L)
            if mask is not None:
                s = s + mask
            pr = torch.softmax(s, dim=-1).view(nkv, group * T, L)
            a = torch.bmm(pr, vc[:, :L]).view(nh, T, hd).transpose(0, 1).reshape(T, nh * hd)
            x = x + a @ lw["attn_output"].T
            h = self.rms_norm(x, lw["ffn_norm"])
            x = x + (torch.nn.functional.silu(h @ lw["ffn_gate"].T) * (h @ lw["ffn_up"].T)) @ lw["ffn_down"].T
        cache["len"] = L
        x = self.rms_norm(x if all_logits else x[-1:], self.out_norm)
        return x @ self.lm_head.T


def main():
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    path, out = sys.argv[1], sys.argv[2]
    threads, n_prefill, n_decode, reps = (int(a) for a in sys.argv[3:])
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(threads)
    t0 = time.time()
    m = TorchLlama(path)
    print(f"torch {torch.__version__}: loaded in {time.time() - t0:.1f} s, {torch.get_num_threads()} threads, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}",
          file=sys.stderr, flush=True)
    ids = [(i * 7919 + 13) % m.vocab for i in range(n_prefill)]
    prefill, decode = [], []
    with torch.inference_mode():
        cache = m.make_cache(CHECK_TOKENS)
        m(ids[:CHECK_TOKENS], cache, all_logits=True).numpy().astype("<f4").tofile(
            os.path.join(out, "check.logits.f32"))
        for rep in range(reps + 1):  # rep 0: warm-up
            cache = m.make_cache(n_prefill + n_decode)
            t = time.perf_counter()
            m(ids, cache)
            p = time.perf_counter() - t
            cache = m.make_cache(n_prefill + n_decode)
            nxt = ids[0]
            t = time.perf_counter()
            for _ in range(n_decode):
                nxt = int(torch.argmax(m([nxt], cache)[0]))
            d = time.perf_counter() - t
            if rep > 0:
                prefill.append(p)
                decode.append(d)
    res = {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "check_tokens": CHECK_TOKENS,
           "vocab": m.vocab, "prefill_s": prefill, "decode_s": decode}
    tmp = os.path.join(out, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.replace(tmp, os.path.join(out, "result.json"))


if __name__ == "__main__":
    main()
