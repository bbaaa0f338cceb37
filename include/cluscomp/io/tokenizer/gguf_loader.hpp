#pragma once
/// The tokenizer tables of a GGUF file: its `tokenizer.ggml.*` metadata and
/// `tokenizer.chat_template`, as a TokenizerVocab (Tokenizer::from_gguf builds the tokenizer).

#include <cstdint>
#include <string>
#include <utility>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/vocab.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

/// See Tokenizer::from_gguf for what is read, the defaults and the errors.
inline TokenizerVocab gguf_tokenizer_vocab(const GgufReader& r) {
  TokenizerVocab v;
  const std::string model = r.get_string("tokenizer.ggml.model");
  if (model == "gpt2") {
    v.model = TokenizerModel::kByteLevelBpe;
    if (!r.has("tokenizer.ggml.pre"))
      throw Error(StatusCode::kUnsupported,
                  r.name() + ": byte-level BPE model without tokenizer.ggml.pre (llama.cpp's "
                             "'default' pre-tokeniser is not supported; reconvert the model)");
    const std::string pre = r.get_string("tokenizer.ggml.pre");
    v.pre = pre_tokenizer_from_gguf_name(pre);
    v.ignore_merges = v.pre == PreTokenizer::kLlama3;
    v.add_bos = v.pre == PreTokenizer::kLlama3;
    v.add_space_prefix = false;
    for (const std::string& m : r.get_string_array("tokenizer.ggml.merges")) {
      const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos)
        throw Error(StatusCode::kFormatError, r.name() + ": merge '" + m + "' has no space");
      v.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
  } else if (model == "llama") {
    v.model = TokenizerModel::kSentencePieceBpe;
    v.add_bos = true;
    v.add_space_prefix = true;
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.scores = r.get_f32_array("tokenizer.ggml.scores");
  } else {
    throw Error(StatusCode::kUnsupported,
                r.name() + ": tokenizer.ggml.model = '" + model +
                    "' is not supported (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE)");
  }
  v.tokens = r.get_string_array("tokenizer.ggml.tokens");
  if (r.has("tokenizer.ggml.token_type")) {
    for (int64_t t : r.get_int_array("tokenizer.ggml.token_type")) {
      if (t < 0 || t > 6)
        throw Error(StatusCode::kFormatError,
                    r.name() + ": tokenizer.ggml.token_type value " + std::to_string(t) + " is not 0..6");
      v.types.push_back(static_cast<TokenType>(t));
    }
  }
  const auto id_or = [&](const char* key, int32_t fallback) {
    return r.has(key) ? static_cast<int32_t>(r.get_u32(key)) : fallback;
  };
  v.bos_id = id_or("tokenizer.ggml.bos_token_id", v.bos_id);
  v.eos_id = id_or("tokenizer.ggml.eos_token_id", v.eos_id);
  v.unk_id = id_or("tokenizer.ggml.unknown_token_id", v.unk_id);
  if (r.has("tokenizer.ggml.add_bos_token")) v.add_bos = r.get_bool("tokenizer.ggml.add_bos_token");
  if (r.has("tokenizer.ggml.add_space_prefix"))
    v.add_space_prefix = r.get_bool("tokenizer.ggml.add_space_prefix");
  v.chat_template = r.get_string_or("tokenizer.chat_template", "");
  return v;
}

}  // namespace detail
CLUSCOMP_NAMESPACE_END
