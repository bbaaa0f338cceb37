#pragma once
/// The tables a Tokenizer is built from (TokenizerVocab) and the enums that describe them: what
/// every loader (GGUF, tokenizer.json, the embedded state, a SentencePiece .model file) produces
/// and what Tokenizer::vocab() gives back. Plain data: no validation happens here (that is
/// detail::TokenizerTables' constructor, tables.hpp).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The segmentation algorithm of a vocabulary.
enum class TokenizerModel {
  kByteLevelBpe,       // GPT-2 style: bytes -> printable alphabet, merges by rank
  kSentencePieceBpe,   // SentencePiece BPE: code points, merges by the merged piece's score
};

/// Token attributes, with GGUF's `tokenizer.ggml.token_type` numbering.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // BOS/EOS/chat markers: matched in text only when encode(parse_special)
  kUserDefined = 4,  // always matched in text as a whole
  kUnused = 5,
  kByte = 6,         // SentencePiece <0xNN>
};

/// Everything a Tokenizer is built from. `tokens` are stored as the model stores them: in GPT-2's
/// byte alphabet ("Ġthe") for byte-level BPE, with "▁" for spaces for SentencePiece.
struct TokenizerVocab {
  TokenizerModel model = TokenizerModel::kByteLevelBpe;
  PreTokenizer pre = PreTokenizer::kGpt2;  // byte-level BPE only
  std::vector<std::string> tokens;
  std::vector<TokenType> types;   // empty: all kNormal
  std::vector<float> scores;      // SentencePiece only (higher merges first)
  std::vector<std::pair<std::string, std::string>> merges;  // byte-level BPE, highest priority first
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;           // the model's default for encode(add_bos)
  bool add_space_prefix = true;   // SentencePiece: a space before the text (and after specials)
  bool ignore_merges = false;     // byte-level BPE: a pre-token that is a whole token is kept (LLaMA 3)
  std::string chat_template;      // Jinja source as the model declares it, or empty
};

CLUSCOMP_NAMESPACE_END
