#pragma once
/// The tokenizer's public entry header: includes the Tokenizer facade
/// (io/tokenizer/tokenizer.hpp), which brings the vocabulary types, the pre-tokenisers, UTF-8
/// helpers and chat templates with it. The pieces live in io/tokenizer/, one job per file (see
/// docs/architecture.md). Not included here: io/tokenizer/model_tokenizer.hpp (the tokenizer of
/// any model file, which pulls in the safetensors and cluscomp-format readers) and
/// io/tokenizer/sentencepiece_tokenizer.hpp (needs libsentencepiece).

#include "cluscomp/io/tokenizer/tokenizer.hpp"
