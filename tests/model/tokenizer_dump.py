#!/usr/bin/env python3
"""Independent reference token ids for the real model's tokenizer, made with the PyPI `tokenizers`
package (Hugging Face, Rust) from the vocabulary and merges that gguf-py reads from the GGUF file.

    python tests/model/tokenizer_dump.py MODEL.gguf EVAL_TEXT OUTDIR

The HF tokenizer is assembled the way SmolLM2's own tokenizer.json is (llama.cpp's "smollm"
pre-tokeniser): BPE model, pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(no prefix
space, GPT-2 regex)], ByteLevel decoder, control tokens (token_type 3) as special added tokens.
Only the tables come from the GGUF; splitting, Unicode classes and merging are the Rust crate's.

Writes (manifest.json LAST, via a temporary + rename, so its presence means the dump is complete):
  OUTDIR/tokenizer.json   the assembled HF tokenizer (the C++ test also loads it with
                          Tokenizer::from_tokenizer_json)
  OUTDIR/manifest.json    {model_size, tokenizers_version, pre, cases: [{name, hex (UTF-8 bytes),
                          parse_special, ids}], eval: {path, size, ids}}
Nothing here shares code with cluscomp: it is the check.
"""
import json
import os
import random
import sys

import tokenizers
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

TRICKY = [
    "Hello world",
    "Hello, world! How's it going? I'm fine; they'll see, we've done, you'd know.",
    "THEY'RE HERE. She'S",
    "   leading spaces and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF \n \n",
    "multiple     spaces   between",
    "digits 1234567890 and 3.14159 and 1,000,000 and v2.0.1",
    "accents: café naïve résumé Ångström São Paulo façade Øresund",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖",
    "CJK: 中文字符 日本語のテキスト 한국어 텍스트",
    "mixed: Привет мир, Γειά σου Κόσμε, שלום עולם, مرحبا بالعالم, नमस्ते दुनिया",
    "unicode numbers: ٣٤٥ ⅫⅣ ½¾ ①②",
    "unicode spaces:\u00a0nbsp\u3000ideographic\u2009thin\u202fnarrow\u0085nel",
    "combining: e\u0301 a\u0308 zero\u200bwidth\ufeffbom",
    "code: def f(x):\n    return x**2  # square\n\tprint(f'{x=}')",
    "punctuation!!! ??? ... --- ___ ((())) [[]] {{}} <<>> @@ ## $$ %% ^^ && ** ~~",
    "'''quotes''' \"double\" `back` 's 't 're",
    "\x01\x02 control \x7f chars",
    "a" * 300,
    " " * 50 + "x",
    "\U0010ffff\U0001f600\u0100",
    "",
]


def build_tokenizer(model_path):
    r = GGUFReader(model_path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(key):
        f = r.fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    def scalar_str(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    assert scalar_str("tokenizer.ggml.model") == "gpt2", "this dump handles byte-level BPE only"
    pre = scalar_str("tokenizer.ggml.pre")
    assert pre == "smollm", "the HF pre-tokenizer below is SmolLM's; got " + pre
    tokens = strings("tokenizer.ggml.tokens")
    types = ints("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok, pre


def random_strings(n):
    atoms = ["a", "Z", "q", "the", " ", "  ", "\t", "\n", "\r\n", "0", "7", "123", "'", "'s",
             "'LL", ".", ",", "!", "-", "é", "ñ", "ß", "中", "日本", "한", "😀", "👍🏽", "\u00a0",
             "\u3000", "٣", "½", "\u0301", "\x01", "<", ">", "|", "Hello", " world"]
    rng = random.Random(1234)
    return ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def main():
    model_path, eval_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    tok, pre = build_tokenizer(model_path)
    tok.save(os.path.join(out, "tokenizer.json"))

    def case(name, text, parse_special):
        ids = tok.encode(text, add_special_tokens=False).ids
        return {"name": name, "hex": text.encode("utf-8").hex(), "parse_special": parse_special, "ids": ids}

    cases = [case("tricky %d" % i, s, False) for i, s in enumerate(TRICKY)]
    cases += [case("random %d" % i, s, False) for i, s in enumerate(random_strings(300))]
    chat = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    cases.append(case("chat (special tokens parsed)", chat, True))

    with open(eval_path, "rb") as f:
        eval_bytes = f.read()
    eval_ids = tok.encode(eval_bytes.decode("utf-8"), add_special_tokens=False).ids
    manifest = {
        "model_path": model_path,
        "model_size": os.path.getsize(model_path),
        "tokenizers_version": tokenizers.__version__,
        "pre": pre,
        "cases": cases,
        "eval": {"path": eval_path, "size": len(eval_bytes), "ids": eval_ids},
    }
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    print("tokenizer dump: %d cases, %d evaluation tokens -> %s" % (len(cases), len(eval_ids), out))


if __name__ == "__main__":
    main()
