#pragma once
/// Tokenizers of LLaMA-family models, without third-party code:
///   - GPT-2-style byte-level BPE (vocabulary + ranked merges + a pre-tokeniser regex), loaded from
///     GGUF (`tokenizer.ggml.model = "gpt2"`) or from a Hugging Face tokenizer.json;
///   - SentencePiece BPE with scores (`tokenizer.ggml.model = "llama"`, LLaMA 1/2 GGUF files):
///     score-ordered merges, "▁" for spaces, <0xNN> byte fallback. (For a SentencePiece .model
///     file use sentencepiece_tokenizer.hpp, which needs libsentencepiece.)
///
/// A Tokenizer is immutable after construction and cheap to copy (shared data); every const
/// member is thread-safe and deterministic (the per-word merge cache lives inside each call).
///
/// This is the facade over the folder's parts: vocab.hpp (the tables it is built from),
/// tables.hpp (their validated lookup form), byte_level_bpe.hpp / sentencepiece_bpe.hpp (the two
/// encoders), codec.hpp (special tokens, encode/decode), gguf_loader.hpp /
/// tokenizer_json_loader.hpp / state.hpp (where the tables come from), chat_template.hpp.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/tokenizer/chat_template.hpp"
#include "cluscomp/io/tokenizer/codec.hpp"
#include "cluscomp/io/tokenizer/gguf_loader.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/state.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"
#include "cluscomp/io/tokenizer/tokenizer_json_loader.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/io/tokenizer/vocab.hpp"

CLUSCOMP_NAMESPACE_BEGIN

class Tokenizer {
 public:
  /// Builds a tokenizer from explicit tables. Throws Error(kInvalidArgument / kFormatError) naming
  /// the offending token or merge (empty vocabulary, duplicate token, a merge whose parts or result
  /// are not tokens, bad special ids). A byte-level vocabulary may lack some of the 256 byte tokens:
  /// encode() then drops those bytes (as HF tokenizers and llama.cpp do), so decode(encode(x))
  /// omits them.
  static Tokenizer from_vocab(TokenizerVocab v) {
    Tokenizer t;
    t.d_ = std::make_shared<const detail::TokenizerTables>(std::move(v));
    return t;
  }

  /// Reads the `tokenizer.ggml.*` metadata of a GGUF file (model, tokens, token_type, scores,
  /// merges, pre, bos/eos/unknown ids, add_bos_token, add_space_prefix) and
  /// `tokenizer.chat_template`. Defaults follow llama.cpp: byte-level BPE adds no BOS unless
  /// `add_bos_token` says so (LLaMA 3 pre-tokenisers do), SentencePiece adds BOS and a space prefix.
  /// Unknown model or pre-tokeniser names: Error(kUnsupported) naming them.
  static Tokenizer from_gguf(const GgufReader& r) { return from_vocab(detail::gguf_tokenizer_vocab(r)); }

  /// Reads a Hugging Face tokenizer.json whose model is BPE with a byte-level pre-tokeniser
  /// (ByteLevel; Digits(individual) + ByteLevel; or Split(LLaMA 3 / Qwen 2 regex) + ByteLevel),
  /// no normalizer. BOS comes from a TemplateProcessing post-processor; a tokenizer_config.json
  /// beside the file, when present, supplies bos/eos tokens, add_bos_token and chat_template.
  /// Anything else: Error(kUnsupported) naming the component.
  static Tokenizer from_tokenizer_json(const std::string& path) {
    return from_vocab(detail::tokenizer_json_vocab(path));
  }

  /// The tables this tokenizer stands for: from_vocab(t.vocab()) encodes and decodes exactly as
  /// t does. Merges come back in priority order, without the repeated pairs from_vocab ignored.
  TokenizerVocab vocab() const { return d_->vocab(); }

  /// The version of the state JSON that to_state_json writes and the newest from_state_json reads.
  static constexpr int kStateVersion = detail::kTokenizerStateVersion;

  /// The whole state of the tokenizer as compact JSON text (schema: docs/format.md,
  /// "cluscomp.tokenizer"): what a cluscomp file embeds so that it tokenises without the model it
  /// was compressed from. Token texts that are not valid UTF-8 and non-finite scores are stored in
  /// escaped forms, so every vocabulary round-trips. Deterministic (same tokenizer, same bytes).
  std::string to_state_json() const { return detail::tokenizer_state_json(*d_); }

  /// Rebuilds a tokenizer from to_state_json's text; it encodes, decodes and applies the chat
  /// template exactly as the original. Errors name `origin`: kFormatError (not JSON, a missing or
  /// mistyped field, a value out of range, bad tables as in from_vocab), kUnsupported (a state
  /// version newer than kStateVersion, an unknown model or pre-tokeniser name).
  static Tokenizer from_state_json(std::string_view text, const std::string& origin) {
    TokenizerVocab v = detail::tokenizer_state_vocab(text, origin);
    try {
      return from_vocab(std::move(v));
    } catch (const Error& e) {
      throw Error(e.code(), origin + ": " + e.what());
    }
  }

  /// Token ids of `text` (UTF-8; anything else is Error(kInvalidArgument) naming the byte offset).
  /// Byte-level BPE: bytes that have no token in the vocabulary are dropped (see from_vocab).
  /// `add_bos` prepends bos_id() (Error(kInvalidArgument) if the model has none). User-defined
  /// tokens are always matched as a whole; control tokens (e.g. "<|im_start|>") only when
  /// `parse_special` is set, else they are tokenised as plain text. Deterministic.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const {
    return detail::encode_text(*d_, text, add_bos, parse_special);
  }

  /// The text of `ids`: the concatenated bytes of each token (control tokens as their text, or
  /// nothing with `skip_special`). For SentencePiece models with a space prefix, the one space that
  /// encode() adds at the start and after each special token is removed again, so
  /// decode(encode(x)) == x for every valid UTF-8 x. The result can be invalid UTF-8 when `ids` are
  /// not the encoding of a text. Out-of-range id: Error(kOutOfRange).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return detail::decode_ids(*d_, ids, skip_special);
  }

  /// The bytes of one token, for streaming output (no space stripping; may be a partial UTF-8
  /// character). Out-of-range id: Error(kOutOfRange).
  std::string token_to_piece(int32_t id) const { return d_->piece.at(d_->checked(id)); }

  /// The token as stored in the vocabulary ("Ġthe", "▁the", "<|im_end|>").
  const std::string& token_text(int32_t id) const { return d_->text.at(d_->checked(id)); }
  TokenType token_type(int32_t id) const { return d_->type.at(d_->checked(id)); }
  /// The id of a token given as stored, or -1.
  int32_t token_id(const std::string& stored_text) const {
    const auto it = d_->stored_to_id.find(stored_text);
    return it == d_->stored_to_id.end() ? -1 : it->second;
  }

  int32_t vocab_size() const { return static_cast<int32_t>(d_->text.size()); }
  int32_t bos_id() const { return d_->bos; }  // -1 when none
  int32_t eos_id() const { return d_->eos; }  // -1 when none
  int32_t unk_id() const { return d_->unk; }  // -1 when none
  bool add_bos_default() const { return d_->add_bos; }
  TokenizerModel model() const { return d_->model; }
  PreTokenizer pre_tokenizer() const { return d_->pre; }
  const std::string& chat_template() const { return d_->chat_template; }

  /// The prompt text for `messages` under the model's chat template (encode it with
  /// parse_special = true). Only ChatML-style templates (<|im_start|>role\ncontent<|im_end|>\n,
  /// with the template's default system message when the first message is not a system one) are
  /// recognised; no template or another one: Error(kUnsupported). Deterministic.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const {
    return cluscomp::apply_chat_template(d_->chat_template, messages, add_generation_prompt);
  }

 private:
  std::shared_ptr<const detail::TokenizerTables> d_;
};

CLUSCOMP_NAMESPACE_END
