#!/usr/bin/env python3
"""Independent LLaMA forward in NumPy (float64), written from the Hugging Face LLaMA definition
(modeling_llama.py: RMSNorm, rotate_half RoPE, repeat_kv GQA, causal softmax attention, SiLU-gated
MLP, tied or separate lm_head), with weights read and dequantised by the PyPI `gguf` package.

    python tests/model/llama_numpy_ref.py MODEL.gguf TEXT OUTDIR

Nothing here shares code with cluscomp. Writes, for tests/model/test_llama_real.cpp:
  OUTDIR/prompt_N.logits.f32  every position's logits of prompt N, (len, vocab) little-endian f32
  OUTDIR/manifest.json        written LAST (temporary + rename), so its presence means the dump
                              is complete:
    model_path, model_size, vocab, prompts: [{text, ids, logits_file, greedy, greedy_margins}],
    nll: {ids, predictions, nll_sum, mean_nll, ppl}
    ppl: {tokenizers_version, add_bos, text_tokens, window, windows, ids (the first windows*window
          ids of the whole text), predictions, nll_sum, mean_nll, ppl}
Token ids come from a crude greedy longest-match over the GGUF vocabulary (GPT-2 byte alphabet),
not from the model's BPE: the check is of the forward pass on fixed ids, and any valid ids do.
ppl is CLUSCOMP.md §4 on the first PPL_WINDOWS non-overlapping windows of PPL_WINDOW tokens of
the evaluation text: each window run from an empty cache, window - 1 predictions each, exp of the
mean NLL. Its ids come from the PyPI `tokenizers` package (Rust), assembled here from the GGUF's
vocabulary and merges as SmolLM2's own tokenizer.json is (BPE; Digits(individual) then ByteLevel
pre-tokeniser; control tokens special), over the whole text; BOS is prepended only when the GGUF's
tokenizer.ggml.add_bos_token says so (llama.cpp's default for byte-level BPE: no), as cluscomp's
`eval` does.
All in float64 (attention per head, in query blocks over only the visible keys, to keep it in 2-D
BLAS products). Measured on 2 shared cores under load (load average ~5): 5.0 min wall, 2.6 min
CPU (user), of which the perplexity pass is ~2.4 min wall (~70 s per 2048-token window).
greedy: 32 tokens continued greedily from the prompt (KV-cached decode); greedy_margins: the gap
between the best and second-best logit at each step (a near-tie would make exact agreement luck).
"""
import json
import os
import sys
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

PROMPTS = [
    "The capital of France is",
    "In the beginning God created the heaven and the earth. And the earth was",
    "def fibonacci(n):\n    ",
    "<|im_start|>user\nWhat is the largest planet in the solar system?<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY_TOKENS = 32
NLL_TOKENS = 512
PPL_WINDOW = 2048
PPL_WINDOWS = 2


def field_value(r, key):
    f = r.fields[key]
    if hasattr(f, "contents"):
        return f.contents()
    return f.parts[f.data[0]][0]


def byte_alphabet():
    """GPT-2's bytes -> printable characters table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def crude_encode(text, token_to_id, max_len):
    table = byte_alphabet()
    s = "".join(table[b] for b in text.encode("utf-8"))
    ids, i = [], 0
    while i < len(s):
        for j in range(min(len(s), i + max_len), i, -1):
            t = token_to_id.get(s[i:j])
            if t is not None:
                ids.append(t)
                i = j
                break
        else:
            raise SystemExit(f"no token covers position {i} of {text!r}")
    return ids


def hf_tokenizer(path):
    """The model's byte-level BPE as an HF `tokenizers` object, from the GGUF tables alone."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    r = GGUFReader(path)
    if field_value(r, "tokenizer.ggml.model") != "gpt2" or field_value(r, "tokenizer.ggml.pre") != "smollm":
        raise SystemExit("the perplexity tokenizer here is SmolLM's byte-level BPE only")
    tokens = field_value(r, "tokenizer.ggml.tokens")
    types = field_value(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field_value(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if int(ty) == 3])
    add_bos = bool(field_value(r, "tokenizer.ggml.add_bos_token")) if "tokenizer.ggml.add_bos_token" in r.fields else False
    bos = int(field_value(r, "tokenizer.ggml.bos_token_id"))
    return tok, add_bos, bos


class Llama:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = field_value(r, "general.architecture")
        if arch not in ("llama", "mistral", "qwen2"):
            raise SystemExit(f"unsupported architecture {arch}")
        g = lambda k, d=None: field_value(r, f"{arch}.{k}") if f"{arch}.{k}" in r.fields else d
        self.n_layers = int(g("block_count"))
        self.hidden = int(g("embedding_length"))
        self.n_heads = int(g("attention.head_count"))
        self.n_kv = int(g("attention.head_count_kv", self.n_heads))
        self.head_dim = int(g("attention.key_length", self.hidden // self.n_heads))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.theta = float(g("rope.freq_base", 10000.0))
        tokens = field_value(r, "tokenizer.ggml.tokens")
        self.token_to_id = {t: i for i, t in enumerate(tokens)}
        self.max_token_len = max(len(t) for t in tokens)
        w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            w[t.name] = a.reshape([int(x) for x in reversed(t.shape)])
        # llama.cpp's converter interleaves each q/k head's rotary halves
        # (reshape(heads, 2, hd/2, ...).swapaxes(1, 2)); undo it to get HF's rotate_half layout.
        def unpermute(m, heads):
            shp = m.shape
            return m.reshape(heads, shp[0] // heads // 2, 2, *shp[1:]).swapaxes(1, 2).reshape(shp)
        if arch in ("llama", "mistral"):
            for i in range(self.n_layers):
                for name, heads in (("attn_q", self.n_heads), ("attn_k", self.n_kv)):
                    for suffix in ("weight", "bias"):
                        key = f"blk.{i}.{name}.{suffix}"
                        if key in w:
                            w[key] = unpermute(w[key], heads)
        self.w = w
        self.embed = w["token_embd.weight"]
        self.lm_head = w.get("output.weight", self.embed)
        self.vocab = self.embed.shape[0]
        half = self.head_dim // 2
        self.inv_freq = 1.0 / (self.theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        assert self.inv_freq.shape[0] == half

    def rms_norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, positions):
        # x: (heads, T, hd); HF: cat(freqs, freqs), x*cos + rotate_half(x)*sin
        ang = np.outer(positions, self.inv_freq)
        emb = np.concatenate([ang, ang], axis=-1)
        cos, sin = np.cos(emb), np.sin(emb)
        half = self.head_dim // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rot * sin

    def linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y if b is None else y + b

    def forward_hidden(self, ids, cache, pos0):
        """ids: new tokens at positions pos0..; cache: list of (K, V) per layer, (kv, T, hd)."""
        T = len(ids)
        x = self.embed[np.asarray(ids)]
        positions = np.arange(pos0, pos0 + T, dtype=np.float64)
        hd, group = self.head_dim, self.n_heads // self.n_kv
        for i in range(self.n_layers):
            p = f"blk.{i}."
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = self.linear(h, p + "attn_q").reshape(T, self.n_heads, hd).transpose(1, 0, 2)
            k = self.linear(h, p + "attn_k").reshape(T, self.n_kv, hd).transpose(1, 0, 2)
            v = self.linear(h, p + "attn_v").reshape(T, self.n_kv, hd).transpose(1, 0, 2)
            q, k = self.rope(q, positions), self.rope(k, positions)
            if cache[i] is not None:
                k = np.concatenate([cache[i][0], k], axis=1)
                v = np.concatenate([cache[i][1], v], axis=1)
            cache[i] = (k, v)
            a = np.empty((T, self.n_heads * hd))
            # Causal softmax attention per head (query head hh reads kv head hh // group: repeat_kv),
            # in blocks of queries, each over only the keys it may see (2-D BLAS products).
            for hh in range(self.n_heads):
                kh, vh = k[hh // group], v[hh // group]
                for r0 in range(0, T, 512):
                    r1 = min(T, r0 + 512)
                    L = pos0 + r1
                    s = (q[hh, r0:r1] @ kh[:L].T) / np.sqrt(hd)
                    s[np.arange(L)[None, :] > (pos0 + np.arange(r0, r1))[:, None]] = -np.inf
                    s -= s.max(axis=-1, keepdims=True)
                    np.exp(s, out=s)
                    s /= s.sum(axis=-1, keepdims=True)
                    a[r0:r1, hh * hd:(hh + 1) * hd] = s @ vh[:L]
            x = x + self.linear(a, p + "attn_output")
            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            gte, up = self.linear(h, p + "ffn_gate"), self.linear(h, p + "ffn_up")
            x = x + self.linear(gte / (1.0 + np.exp(-gte)) * up, p + "ffn_down")
        return self.rms_norm(x, self.w["output_norm.weight"])

    def forward(self, ids, cache, pos0):
        return self.forward_hidden(ids, cache, pos0) @ self.lm_head.T


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def perplexity(m, model_path, text_path, t0):
    import tokenizers
    tok, add_bos, bos = hf_tokenizer(model_path)
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = ([bos] if add_bos else []) + tok.encode(text, add_special_tokens=False).ids
    need = PPL_WINDOW * PPL_WINDOWS
    if len(ids) < need:
        raise SystemExit(f"{text_path}: only {len(ids)} tokens, fewer than {PPL_WINDOWS} windows of {PPL_WINDOW}")
    print(f"tokenised {len(text)} characters into {len(ids)} tokens ({time.time() - t0:.1f} s)", flush=True)
    nll = 0.0
    for w in range(PPL_WINDOWS):
        win = ids[w * PPL_WINDOW:(w + 1) * PPL_WINDOW]
        h = m.forward_hidden(win, [None] * m.n_layers, 0)
        for r0 in range(0, PPL_WINDOW - 1, 256):  # row t predicts win[t + 1]
            r1 = min(r0 + 256, PPL_WINDOW - 1)
            lp = log_softmax(h[r0:r1] @ m.lm_head.T)
            nll -= float(lp[np.arange(r1 - r0), np.asarray(win[r0 + 1:r1 + 1])].sum())
        print(f"window {w}: running mean NLL {nll / ((w + 1) * (PPL_WINDOW - 1)):.6f} ({time.time() - t0:.1f} s)",
              flush=True)
    n = PPL_WINDOWS * (PPL_WINDOW - 1)
    print(f"perplexity over {PPL_WINDOWS} windows of {PPL_WINDOW}: {np.exp(nll / n):.6f}", flush=True)
    return {"tokenizers_version": tokenizers.__version__, "add_bos": add_bos, "text_tokens": len(ids),
            "window": PPL_WINDOW, "windows": PPL_WINDOWS, "ids": ids[:need], "predictions": n,
            "nll_sum": nll, "mean_nll": nll / n, "ppl": float(np.exp(nll / n))}


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    model_path, text_path, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    m = Llama(model_path)
    print(f"loaded {model_path} in {time.time() - t0:.1f} s", flush=True)
    manifest = {"model_path": os.path.abspath(model_path), "model_size": os.path.getsize(model_path),
                "vocab": m.vocab, "prompts": []}
    for n, text in enumerate(PROMPTS):
        ids = crude_encode(text, m.token_to_id, m.max_token_len)
        cache = [None] * m.n_layers
        logits = m.forward(ids, cache, 0)
        fname = f"prompt_{n}.logits.f32"
        logits.astype("<f4").tofile(os.path.join(out, fname))
        greedy, margins = [], []
        last = logits[-1]
        for step in range(GREEDY_TOKENS):
            top2 = np.argsort(-last, kind="stable")[:2]
            greedy.append(int(top2[0]))
            margins.append(float(last[top2[0]] - last[top2[1]]))
            if step + 1 < GREEDY_TOKENS:
                last = m.forward([greedy[-1]], cache, len(ids) + step)[-1]
        manifest["prompts"].append({"text": text, "ids": ids, "logits_file": fname, "greedy": greedy,
                                    "greedy_margins": margins})
        print(f"prompt {n}: {len(ids)} ids, greedy min margin {min(margins):.4f} ({time.time() - t0:.1f} s)",
              flush=True)
    with open(text_path, encoding="utf-8") as f:
        text = f.read(8 * NLL_TOKENS)
    ids = crude_encode(text, m.token_to_id, m.max_token_len)[:NLL_TOKENS]
    if len(ids) < NLL_TOKENS:
        raise SystemExit(f"{text_path}: only {len(ids)} tokens")
    lp = log_softmax(m.forward(ids, [None] * m.n_layers, 0))
    nll = -float(sum(lp[i, ids[i + 1]] for i in range(len(ids) - 1)))
    manifest["nll"] = {"ids": ids, "predictions": len(ids) - 1, "nll_sum": nll,
                       "mean_nll": nll / (len(ids) - 1), "ppl": float(np.exp(nll / (len(ids) - 1)))}
    print(f"NLL over {len(ids) - 1} predictions: mean {nll / (len(ids) - 1):.6f}, "
          f"ppl {np.exp(nll / (len(ids) - 1)):.4f} ({time.time() - t0:.1f} s)", flush=True)
    manifest["ppl"] = perplexity(m, model_path, text_path, t0)
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f)
    os.replace(tmp, os.path.join(out, "manifest.json"))


if __name__ == "__main__":
    main()
