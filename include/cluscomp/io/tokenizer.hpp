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

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/chat_template.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/pretokenize.hpp"
#include "cluscomp/io/utf8.hpp"

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

class Tokenizer {
 public:
  /// Builds a tokenizer from explicit tables. Throws Error(kInvalidArgument / kFormatError) naming
  /// the offending token or merge (empty vocabulary, duplicate token, a merge whose parts or result
  /// are not tokens, bad special ids). A byte-level vocabulary may lack some of the 256 byte tokens:
  /// encode() then drops those bytes (as HF tokenizers and llama.cpp do), so decode(encode(x))
  /// omits them.
  static Tokenizer from_vocab(TokenizerVocab v) {
    Tokenizer t;
    t.d_ = std::make_shared<const Data>(std::move(v));
    return t;
  }

  /// Reads the `tokenizer.ggml.*` metadata of a GGUF file (model, tokens, token_type, scores,
  /// merges, pre, bos/eos/unknown ids, add_bos_token, add_space_prefix) and
  /// `tokenizer.chat_template`. Defaults follow llama.cpp: byte-level BPE adds no BOS unless
  /// `add_bos_token` says so (LLaMA 3 pre-tokenisers do), SentencePiece adds BOS and a space prefix.
  /// Unknown model or pre-tokeniser names: Error(kUnsupported) naming them.
  static Tokenizer from_gguf(const GgufReader& r) {
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
    return from_vocab(std::move(v));
  }

  /// Reads a Hugging Face tokenizer.json whose model is BPE with a byte-level pre-tokeniser
  /// (ByteLevel; Digits(individual) + ByteLevel; or Split(LLaMA 3 / Qwen 2 regex) + ByteLevel),
  /// no normalizer. BOS comes from a TemplateProcessing post-processor; a tokenizer_config.json
  /// beside the file, when present, supplies bos/eos tokens, add_bos_token and chat_template.
  /// Anything else: Error(kUnsupported) naming the component.
  static Tokenizer from_tokenizer_json(const std::string& path) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(path));
    } catch (const nlohmann::json::exception& e) {
      throw Error(StatusCode::kFormatError, path + ": not valid JSON: " + e.what());
    }
    try {
      return from_tokenizer_json_value(j, path);
    } catch (const nlohmann::json::exception& e) {
      throw Error(StatusCode::kFormatError, path + ": unexpected tokenizer.json content: " + e.what());
    }
  }

  /// The tables this tokenizer stands for: from_vocab(t.vocab()) encodes and decodes exactly as
  /// t does. Merges come back in priority order, without the repeated pairs from_vocab ignored.
  TokenizerVocab vocab() const;

  /// The version of the state JSON that to_state_json writes and the newest from_state_json reads.
  static constexpr int kStateVersion = 1;

  /// The whole state of the tokenizer as compact JSON text (schema: docs/format.md,
  /// "cluscomp.tokenizer"): what a cluscomp file embeds so that it tokenises without the model it
  /// was compressed from. Token texts that are not valid UTF-8 and non-finite scores are stored in
  /// escaped forms, so every vocabulary round-trips. Deterministic (same tokenizer, same bytes).
  std::string to_state_json() const;

  /// Rebuilds a tokenizer from to_state_json's text; it encodes, decodes and applies the chat
  /// template exactly as the original. Errors name `origin`: kFormatError (not JSON, a missing or
  /// mistyped field, a value out of range, bad tables as in from_vocab), kUnsupported (a state
  /// version newer than kStateVersion, an unknown model or pre-tokeniser name).
  static Tokenizer from_state_json(std::string_view text, const std::string& origin);

  /// Token ids of `text` (UTF-8; anything else is Error(kInvalidArgument) naming the byte offset).
  /// Byte-level BPE: bytes that have no token in the vocabulary are dropped (see from_vocab).
  /// `add_bos` prepends bos_id() (Error(kInvalidArgument) if the model has none). User-defined
  /// tokens are always matched as a whole; control tokens (e.g. "<|im_start|>") only when
  /// `parse_special` is set, else they are tokenised as plain text. Deterministic.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const {
    return d_->encode(text, add_bos, parse_special);
  }

  /// The text of `ids`: the concatenated bytes of each token (control tokens as their text, or
  /// nothing with `skip_special`). For SentencePiece models with a space prefix, the one space that
  /// encode() adds at the start and after each special token is removed again, so
  /// decode(encode(x)) == x for every valid UTF-8 x. The result can be invalid UTF-8 when `ids` are
  /// not the encoding of a text. Out-of-range id: Error(kOutOfRange).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return d_->decode(ids, skip_special);
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
  struct Merge {
    int32_t rank;
    int32_t merged;
  };

  struct Data {
    TokenizerModel model;
    PreTokenizer pre;
    std::vector<std::string> text;   // as stored
    std::vector<std::string> piece;  // the bytes each token stands for
    std::vector<TokenType> type;
    std::vector<float> score;
    std::unordered_map<std::string, int32_t> stored_to_id;
    std::unordered_map<std::string, int32_t> bytes_to_id;  // byte-level: normal tokens by their bytes
    std::unordered_map<uint64_t, Merge> merges;
    std::array<int32_t, 256> byte_id{};  // byte-level: token of each byte; SentencePiece: <0xNN>
    std::array<std::vector<int32_t>, 256> specials_by_first_byte;  // longest first
    int32_t bos = -1, eos = -1, unk = -1;
    bool add_bos = false, add_space_prefix = false, ignore_merges = false;
    std::string chat_template;

    explicit Data(TokenizerVocab v);
    size_t checked(int32_t id) const {
      if (id < 0 || static_cast<size_t>(id) >= text.size())
        throw Error(StatusCode::kOutOfRange, "token id " + std::to_string(id) +
                                                 " is outside the vocabulary [0, " +
                                                 std::to_string(text.size()) + ")");
      return static_cast<size_t>(id);
    }
    static uint64_t pair_key(int32_t a, int32_t b) {
      return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    /// The merge pairs (left id, right id), best rank first.
    std::vector<std::pair<int32_t, int32_t>> merges_by_rank() const;
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
    void encode_byte_level(std::string_view frag, std::vector<int32_t>& out) const;
    void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
    void encode_sentencepiece(std::string_view frag, bool space_prefix, std::vector<int32_t>& out) const;
  };

  static Tokenizer from_tokenizer_json_value(const nlohmann::json& j, const std::string& path);

  std::shared_ptr<const Data> d_;
};

// ---- construction ------------------------------------------------------------------------------

namespace detail {

/// "Ġhello" -> " hello" (GPT-2 alphabet to bytes); false when a character is outside the alphabet.
inline bool byte_level_to_bytes(const std::string& s, std::string& out) {
  out.clear();
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = unicode::decode_utf8(s, i, cp);
    if (len == 0) return false;
    const int b = unicode::kByteUnicode.to_byte(cp);
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += len;
  }
  return true;
}

/// "<0x0A>" -> 10, or -1.
inline int parse_byte_token(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = s[static_cast<size_t>(k)];
    v *= 16;
    if (c >= '0' && c <= '9') v += c - '0';
    else if (c >= 'A' && c <= 'F') v += c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v += c - 'a' + 10;
    else return -1;
  }
  return v;
}

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

inline const char* kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

}  // namespace detail

inline Tokenizer::Data::Data(TokenizerVocab v)
    : model(v.model), pre(v.pre), text(std::move(v.tokens)), bos(v.bos_id), eos(v.eos_id),
      unk(v.unk_id), add_bos(v.add_bos), add_space_prefix(v.add_space_prefix),
      ignore_merges(v.ignore_merges), chat_template(std::move(v.chat_template)) {
  const size_t n = text.size();
  if (n == 0) throw Error(StatusCode::kInvalidArgument, "tokenizer vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX))
    throw Error(StatusCode::kInvalidArgument, "tokenizer vocabulary has more than 2^31-1 tokens");
  if (v.types.empty()) v.types.assign(n, TokenType::kNormal);
  if (v.types.size() != n)
    throw Error(StatusCode::kInvalidArgument, "token_type has " + std::to_string(v.types.size()) +
                                                  " entries for " + std::to_string(n) + " tokens");
  type = std::move(v.types);
  for (const auto* id : {&bos, &eos, &unk})
    if (*id < -1 || *id >= static_cast<int32_t>(n))
      throw Error(StatusCode::kInvalidArgument,
                  "special token id " + std::to_string(*id) + " is outside the vocabulary of " +
                      std::to_string(n));
  stored_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // Duplicates: the first id wins, as in llama.cpp and HF (later copies stay decodable).
    stored_to_id.emplace(text[i], static_cast<int32_t>(i));
  }
  piece.resize(n);
  byte_id.fill(-1);

  if (model == TokenizerModel::kByteLevelBpe) {
    std::string bytes;
    for (size_t i = 0; i < n; ++i) {
      const bool special = type[i] == TokenType::kControl || type[i] == TokenType::kUserDefined;
      if (!special && detail::byte_level_to_bytes(text[i], bytes)) {
        piece[i] = bytes;
        bytes_to_id.emplace(bytes, static_cast<int32_t>(i));
        if (bytes.size() == 1 && byte_id[static_cast<uint8_t>(bytes[0])] < 0)
          byte_id[static_cast<uint8_t>(bytes[0])] = static_cast<int32_t>(i);
      } else {
        piece[i] = text[i];  // added tokens are literal text
      }
    }
    // Bytes without a token (SmolLM2 lacks 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xF1, 0xF2 and the
    // bytes UTF-8 never uses) are dropped by encode(), as HF tokenizers and llama.cpp do.
    merges.reserve(v.merges.size());
    for (size_t r = 0; r < v.merges.size(); ++r) {
      const auto& m = v.merges[r];
      const auto a = stored_to_id.find(m.first);
      const auto b = stored_to_id.find(m.second);
      const auto c = stored_to_id.find(m.first + m.second);
      if (a == stored_to_id.end() || b == stored_to_id.end() || c == stored_to_id.end())
        throw Error(StatusCode::kFormatError, "merge " + std::to_string(r) + " '" + m.first + " " +
                                                  m.second + "': a part or the result is not a token");
      // A repeated pair keeps its first (best) rank, as in HF.
      merges.emplace(pair_key(a->second, b->second),
                     Merge{static_cast<int32_t>(r), c->second});
    }
  } else {
    score = std::move(v.scores);
    if (score.size() < n)
      throw Error(StatusCode::kFormatError, "SentencePiece vocabulary has " +
                                                std::to_string(score.size()) + " scores for " +
                                                std::to_string(n) + " tokens");
    score.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (type[i] == TokenType::kByte) {
        const int b = detail::parse_byte_token(text[i]);
        if (b < 0)
          throw Error(StatusCode::kFormatError,
                      "byte token " + std::to_string(i) + " '" + text[i] + "' is not <0xNN>");
        piece[i] = std::string(1, static_cast<char>(b));
        if (byte_id[static_cast<size_t>(b)] < 0) byte_id[static_cast<size_t>(b)] = static_cast<int32_t>(i);
      } else if (type[i] == TokenType::kControl || type[i] == TokenType::kUnknown) {
        piece[i] = text[i];
      } else {
        piece[i] = detail::replace_all(text[i], detail::kSpmSpace, " ");
      }
    }
  }

  for (size_t i = 0; i < n; ++i) {
    if ((type[i] == TokenType::kControl || type[i] == TokenType::kUserDefined) && !text[i].empty())
      specials_by_first_byte[static_cast<uint8_t>(text[i][0])].push_back(static_cast<int32_t>(i));
  }
  for (auto& list : specials_by_first_byte)
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return text[static_cast<size_t>(a)].size() > text[static_cast<size_t>(b)].size();
    });
}

// ---- encoding ----------------------------------------------------------------------------------

inline std::vector<int32_t> Tokenizer::Data::encode(std::string_view s, bool want_bos,
                                                    bool parse_special) const {
  unicode::require_valid_utf8(s, "text to encode");
  std::vector<int32_t> out;
  out.reserve(s.size() / 3 + 4);
  if (want_bos) {
    if (bos < 0) throw Error(StatusCode::kInvalidArgument, "encode(add_bos): the model has no BOS token");
    out.push_back(bos);
  }
  bool prev_special = true;  // SentencePiece: a space prefix at the start and after specials
  const auto emit_text = [&](std::string_view frag) {
    if (frag.empty()) return;
    if (model == TokenizerModel::kByteLevelBpe) {
      encode_byte_level(frag, out);
    } else {
      encode_sentencepiece(frag, add_space_prefix && prev_special, out);
    }
    prev_special = false;
  };
  size_t start = 0;
  size_t i = 0;
  while (i < s.size()) {
    int32_t found = -1;
    for (int32_t id : specials_by_first_byte[static_cast<uint8_t>(s[i])]) {
      const std::string& t = text[static_cast<size_t>(id)];
      if (!parse_special && type[static_cast<size_t>(id)] == TokenType::kControl) continue;
      if (t.size() <= s.size() - i && std::memcmp(s.data() + i, t.data(), t.size()) == 0) {
        found = id;
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    emit_text(s.substr(start, i - start));
    out.push_back(found);
    prev_special = true;
    i += text[static_cast<size_t>(found)].size();
    start = i;
  }
  emit_text(s.substr(start));
  return out;
}

inline void Tokenizer::Data::encode_byte_level(std::string_view frag, std::vector<int32_t>& out) const {
  std::vector<std::pair<size_t, size_t>> spans;
  detail::DecodedText scratch;
  pre_tokenize(pre, frag, spans, scratch);
  // Per-call cache of each distinct pre-token's ids (views into `frag`, which outlives it).
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> store;
  std::vector<int32_t> tmp;
  for (const auto& sp : spans) {
    const std::string_view word = frag.substr(sp.first, sp.second);
    const auto it = cache.find(word);
    if (it != cache.end()) {
      out.insert(out.end(), store.begin() + it->second.first,
                 store.begin() + it->second.first + it->second.second);
      continue;
    }
    tmp.clear();
    bpe_word(word, tmp);
    cache.emplace(word, std::make_pair(static_cast<uint32_t>(store.size()), static_cast<uint32_t>(tmp.size())));
    store.insert(store.end(), tmp.begin(), tmp.end());
    out.insert(out.end(), tmp.begin(), tmp.end());
  }
}

/// Byte-level BPE of one pre-token: start from its bytes, repeatedly merge the adjacent pair with
/// the lowest rank (leftmost on ties) until none applies. O(n log n) with a heap of candidates.
inline void Tokenizer::Data::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    const auto it = bytes_to_id.find(std::string(word));
    if (it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const size_t n = word.size();
  if (n == 1) {
    const int32_t id = byte_id[static_cast<uint8_t>(word[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  struct Sym {
    int32_t id, prev, next;
  };
  struct Cand {
    int32_t rank, pos, merged;
  };
  const auto later = [](const Cand& a, const Cand& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos);
  };
  std::vector<Sym> sym;
  sym.reserve(n);
  for (size_t k = 0; k < n; ++k) {
    const int32_t id = byte_id[static_cast<uint8_t>(word[k])];
    if (id < 0) continue;  // a byte the vocabulary lacks: dropped, its neighbours become adjacent
    sym.push_back({id, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  std::vector<Cand> heap;
  heap.reserve(n);
  const auto push = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const auto it = merges.find(pair_key(sym[static_cast<size_t>(left)].id, sym[static_cast<size_t>(right)].id));
    if (it == merges.end()) return;
    heap.push_back({it->second.rank, left, it->second.merged});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (size_t k = 0; k + 1 < sym.size(); ++k) push(static_cast<int32_t>(k));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Cand c = heap.back();
    heap.pop_back();
    Sym& l = sym[static_cast<size_t>(c.pos)];
    if (l.id < 0 || l.next < 0) continue;
    Sym& r = sym[static_cast<size_t>(l.next)];
    const auto it = merges.find(pair_key(l.id, r.id));
    if (it == merges.end() || it->second.merged != c.merged) continue;  // stale
    l.id = c.merged;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = c.pos;
    push(l.prev);
    push(c.pos);
  }
  for (int32_t k = 0; k >= 0; k = sym[static_cast<size_t>(k)].next) out.push_back(sym[static_cast<size_t>(k)].id);
}

/// SentencePiece BPE of one text fragment: spaces become "▁" (plus one in front when
/// `space_prefix`), start from code points, repeatedly merge the adjacent pair whose concatenation
/// is the highest-scoring piece (leftmost on ties); pieces that are not tokens fall back to
/// <0xNN> byte tokens, else to the unknown token.
inline void Tokenizer::Data::encode_sentencepiece(std::string_view frag, bool space_prefix,
                                                  std::vector<int32_t>& out) const {
  std::string s;
  s.reserve(frag.size() * 2 + 3);
  if (space_prefix) s += detail::kSpmSpace;
  for (char c : frag) {
    if (c == ' ') s += detail::kSpmSpace;
    else s.push_back(c);
  }
  struct Sym {
    uint32_t off, len;
    int32_t prev, next;
  };
  std::vector<Sym> sym;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t len = unicode::decode_utf8(s, i, cp);  // valid: checked by encode()
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len),
                   static_cast<int32_t>(sym.size()) - 1, -1});
    i += len;
  }
  for (size_t k = 0; k + 1 < sym.size(); ++k) sym[k].next = static_cast<int32_t>(k + 1);
  struct Cand {
    float score;
    int32_t left;
    uint32_t len;
  };
  const auto worse = [](const Cand& a, const Cand& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Cand> heap;
  std::unordered_map<std::string, std::pair<int32_t, int32_t>> rev_merge;  // unused pieces
  std::string key;
  const auto push = [&](int32_t left) {
    if (left < 0) return;
    const Sym& l = sym[static_cast<size_t>(left)];
    if (l.next < 0) return;
    const Sym& r = sym[static_cast<size_t>(l.next)];
    key.assign(s, l.off, l.len + r.len);
    const auto it = stored_to_id.find(key);
    if (it == stored_to_id.end()) return;
    const TokenType t = type[static_cast<size_t>(it->second)];
    if (t != TokenType::kNormal && t != TokenType::kUserDefined && t != TokenType::kUnused) return;
    heap.push_back({score[static_cast<size_t>(it->second)], left, l.len + r.len});
    std::push_heap(heap.begin(), heap.end(), worse);
    if (t == TokenType::kUnused) rev_merge[key] = {left, l.next};
  };
  for (size_t k = 0; k + 1 < sym.size(); ++k) push(static_cast<int32_t>(k));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Cand c = heap.back();
    heap.pop_back();
    Sym& l = sym[static_cast<size_t>(c.left)];
    if (l.len == 0 || l.next < 0) continue;
    Sym& r = sym[static_cast<size_t>(l.next)];
    if (l.len + r.len != c.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = c.left;
    push(l.prev);
    push(c.left);
  }
  // Emits one symbol's text: its token, or the halves of an unused piece, or byte fallback.
  const auto emit = [&](auto&& self, std::string_view piece_text) -> void {
    const auto it = stored_to_id.find(std::string(piece_text));
    if (it != stored_to_id.end() && type[static_cast<size_t>(it->second)] != TokenType::kUnused &&
        type[static_cast<size_t>(it->second)] != TokenType::kControl) {
      out.push_back(it->second);
      return;
    }
    if (it != stored_to_id.end()) {
      const auto rm = rev_merge.find(std::string(piece_text));
      if (rm != rev_merge.end()) {
        const Sym& a = sym[static_cast<size_t>(rm->second.first)];
        // The left half's original extent: from its offset to the right half's offset.
        const Sym& b = sym[static_cast<size_t>(rm->second.second)];
        const std::string_view whole(s);
        self(self, whole.substr(a.off, b.off - a.off));
        self(self, whole.substr(b.off, a.off + piece_text.size() - b.off));
        return;
      }
    }
    for (char ch : piece_text) {
      const int32_t b = byte_id[static_cast<uint8_t>(ch)];
      if (b >= 0) {
        out.push_back(b);
      } else if (unk >= 0) {
        out.push_back(unk);
      } else {
        throw Error(StatusCode::kInvalidArgument,
                    "text has a character that is not in the vocabulary, and the model has neither "
                    "byte tokens nor an unknown token");
      }
    }
  };
  const std::string_view whole(s);
  for (int32_t k = sym.empty() ? -1 : 0; k >= 0; k = sym[static_cast<size_t>(k)].next) {
    const Sym& x = sym[static_cast<size_t>(k)];
    emit(emit, whole.substr(x.off, x.len));
  }
}

// ---- decoding ----------------------------------------------------------------------------------

inline std::string Tokenizer::Data::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool prev_special = true;
  for (int32_t id : ids) {
    const size_t k = checked(id);
    const TokenType t = type[k];
    if (t == TokenType::kControl || t == TokenType::kUserDefined) {
      if (!(skip_special && t == TokenType::kControl)) out += piece[k];
      prev_special = true;
      continue;
    }
    const std::string& p = piece[k];
    if (model == TokenizerModel::kSentencePieceBpe && add_space_prefix && prev_special &&
        !p.empty() && p[0] == ' ') {
      out.append(p, 1, std::string::npos);
    } else {
      out += p;
    }
    prev_special = false;
  }
  return out;
}

// ---- state (what cluscomp files embed) -----------------------------------------------------------

inline std::vector<std::pair<int32_t, int32_t>> Tokenizer::Data::merges_by_rank() const {
  std::vector<std::pair<int32_t, uint64_t>> by_rank;
  by_rank.reserve(merges.size());
  for (const auto& kv : merges) by_rank.emplace_back(kv.second.rank, kv.first);
  std::sort(by_rank.begin(), by_rank.end());  // ranks are unique
  std::vector<std::pair<int32_t, int32_t>> out;
  out.reserve(by_rank.size());
  for (const auto& r : by_rank)
    out.emplace_back(static_cast<int32_t>(r.second >> 32), static_cast<int32_t>(r.second & 0xFFFFFFFFu));
  return out;
}

inline TokenizerVocab Tokenizer::vocab() const {
  const Data& d = *d_;
  TokenizerVocab v;
  v.model = d.model;
  v.pre = d.pre;
  v.tokens = d.text;
  v.types = d.type;
  v.scores = d.score;
  for (const auto& m : d.merges_by_rank())
    v.merges.emplace_back(d.text[static_cast<size_t>(m.first)], d.text[static_cast<size_t>(m.second)]);
  v.bos_id = d.bos;
  v.eos_id = d.eos;
  v.unk_id = d.unk;
  v.add_bos = d.add_bos;
  v.add_space_prefix = d.add_space_prefix;
  v.ignore_merges = d.ignore_merges;
  v.chat_template = d.chat_template;
  return v;
}

namespace detail {

/// A byte string as JSON: itself when it is valid UTF-8 (JSON text must be), else {"hex": ".."}.
inline nlohmann::json json_of_bytes(const std::string& s) {
  if (unicode::find_invalid_utf8(s) == s.size()) return s;
  static const char* hex = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h.push_back(hex[c >> 4]);
    h.push_back(hex[c & 15]);
  }
  return nlohmann::json{{"hex", h}};
}

/// The inverse of json_of_bytes; false for anything else.
inline bool bytes_of_json(const nlohmann::json& j, std::string& out) {
  if (j.is_string()) {
    out = j.get<std::string>();
    return true;
  }
  if (!j.is_object() || j.size() != 1 || !j.contains("hex") || !j["hex"].is_string()) return false;
  const std::string& h = j["hex"].get_ref<const std::string&>();
  if (h.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < h.size(); i += 2) {
    int v = 0;
    for (size_t k = i; k < i + 2; ++k) {
      const char c = h[k];
      v *= 16;
      if (c >= '0' && c <= '9') v += c - '0';
      else if (c >= 'a' && c <= 'f') v += c - 'a' + 10;
      else return false;
    }
    out.push_back(static_cast<char>(v));
  }
  return true;
}

}  // namespace detail

inline std::string Tokenizer::to_state_json() const {
  const Data& d = *d_;
  const bool byte_level = d.model == TokenizerModel::kByteLevelBpe;
  nlohmann::json j;
  j["version"] = kStateVersion;
  j["model"] = byte_level ? "byte_level_bpe" : "sentencepiece_bpe";
  nlohmann::json tokens = nlohmann::json::array(), types = nlohmann::json::array();
  for (size_t i = 0; i < d.text.size(); ++i) {
    tokens.push_back(detail::json_of_bytes(d.text[i]));
    types.push_back(static_cast<int32_t>(d.type[i]));
  }
  j["tokens"] = std::move(tokens);
  j["types"] = std::move(types);
  if (byte_level) {
    j["pre"] = pre_tokenizer_gguf_name(d.pre);
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& m : d.merges_by_rank()) merges.push_back({m.first, m.second});
    j["merges"] = std::move(merges);
  } else {
    // JSON has no inf/nan: those scores are strings (nlohmann would write null).
    nlohmann::json scores = nlohmann::json::array();
    for (float x : d.score) {
      if (std::isfinite(x)) scores.push_back(x);
      else scores.push_back(std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"));
    }
    j["scores"] = std::move(scores);
  }
  j["bos_id"] = d.bos;
  j["eos_id"] = d.eos;
  j["unk_id"] = d.unk;
  j["add_bos"] = d.add_bos;
  j["add_space_prefix"] = d.add_space_prefix;
  j["ignore_merges"] = d.ignore_merges;
  j["chat_template"] = detail::json_of_bytes(d.chat_template);
  return j.dump();
}

inline Tokenizer Tokenizer::from_state_json(std::string_view text, const std::string& origin) {
  const auto bad = [&](const std::string& what) { return Error(StatusCode::kFormatError, origin + ": " + what); };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("tokenizer state is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw bad("tokenizer state is not a JSON object");
  TokenizerVocab v;
  try {
    const int64_t version = j.at("version").get<int64_t>();
    if (version < 1) throw bad("tokenizer state version " + std::to_string(version) + " is not >= 1");
    if (version > kStateVersion)
      throw Error(StatusCode::kUnsupported, origin + ": tokenizer state version " + std::to_string(version) +
                                                " is newer than this build reads (" + std::to_string(kStateVersion) + ")");
    const std::string model = j.at("model").get<std::string>();
    if (model == "byte_level_bpe") v.model = TokenizerModel::kByteLevelBpe;
    else if (model == "sentencepiece_bpe") v.model = TokenizerModel::kSentencePieceBpe;
    else throw Error(StatusCode::kUnsupported, origin + ": tokenizer model '" + model + "' is not supported");
    for (const auto& t : j.at("tokens")) {
      v.tokens.emplace_back();
      if (!detail::bytes_of_json(t, v.tokens.back()))
        throw bad("token " + std::to_string(v.tokens.size() - 1) + " is neither a string nor {\"hex\": ...}");
    }
    const int64_t n = static_cast<int64_t>(v.tokens.size());
    for (const auto& t : j.at("types")) {
      const int64_t x = t.get<int64_t>();
      if (x < 0 || x > 6) throw bad("token type " + std::to_string(x) + " is not 0..6");
      v.types.push_back(static_cast<TokenType>(x));
    }
    if (v.model == TokenizerModel::kByteLevelBpe) {
      try {
        v.pre = pre_tokenizer_from_gguf_name(j.at("pre").get<std::string>());
      } catch (const Error& e) {
        throw Error(e.code(), origin + ": " + e.what());
      }
      for (const auto& m : j.at("merges")) {
        if (!m.is_array() || m.size() != 2) throw bad("merge " + std::to_string(v.merges.size()) + " is not [left, right]");
        const int64_t a = m[0].get<int64_t>(), b = m[1].get<int64_t>();
        if (a < 0 || a >= n || b < 0 || b >= n)
          throw bad("merge " + std::to_string(v.merges.size()) + " names a token outside the vocabulary of " + std::to_string(n));
        v.merges.emplace_back(v.tokens[static_cast<size_t>(a)], v.tokens[static_cast<size_t>(b)]);
      }
    } else {
      for (const auto& x : j.at("scores")) {
        if (x.is_number()) {
          v.scores.push_back(x.get<float>());
        } else {
          const std::string s = x.get<std::string>();
          if (s == "inf") v.scores.push_back(std::numeric_limits<float>::infinity());
          else if (s == "-inf") v.scores.push_back(-std::numeric_limits<float>::infinity());
          else if (s == "nan") v.scores.push_back(std::numeric_limits<float>::quiet_NaN());
          else throw bad("score '" + s + "' is not a number, \"inf\", \"-inf\" or \"nan\"");
        }
      }
    }
    const auto id = [&](const char* key) {
      const int64_t x = j.at(key).get<int64_t>();
      if (x < -1 || x >= n) throw bad(std::string(key) + " " + std::to_string(x) + " is outside the vocabulary of " + std::to_string(n));
      return static_cast<int32_t>(x);
    };
    v.bos_id = id("bos_id");
    v.eos_id = id("eos_id");
    v.unk_id = id("unk_id");
    v.add_bos = j.at("add_bos").get<bool>();
    v.add_space_prefix = j.at("add_space_prefix").get<bool>();
    v.ignore_merges = j.at("ignore_merges").get<bool>();
    if (!detail::bytes_of_json(j.at("chat_template"), v.chat_template))
      throw bad("chat_template is neither a string nor {\"hex\": ...}");
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("unexpected tokenizer state content: ") + e.what());
  }
  try {
    return from_vocab(std::move(v));
  } catch (const Error& e) {
    throw Error(e.code(), origin + ": " + e.what());
  }
}

// ---- tokenizer.json ----------------------------------------------------------------------------

namespace detail {
inline const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

inline bool is_type(const nlohmann::json& j, const char* t) {
  return j.is_object() && j.contains("type") && j["type"] == t;
}
inline bool byte_level_with_regex(const nlohmann::json& j, bool want_regex) {
  if (!is_type(j, "ByteLevel")) return false;
  const bool use_regex = j.value("use_regex", true);
  const bool prefix = j.value("add_prefix_space", false);
  return use_regex == want_regex && !prefix;
}
inline std::string json_token_content(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
  return "";
}
}  // namespace detail

inline Tokenizer Tokenizer::from_tokenizer_json_value(const nlohmann::json& j, const std::string& path) {
  const auto unsupported = [&](const std::string& what, const nlohmann::json& part) {
    std::string dump = part.dump();
    if (dump.size() > 300) dump = dump.substr(0, 300) + "...";
    throw Error(StatusCode::kUnsupported, path + ": unsupported " + what + ": " + dump);
  };
  const nlohmann::json& m = j.at("model");
  if (!detail::is_type(m, "BPE")) unsupported("model (only BPE)", m.contains("type") ? m["type"] : m);
  if (m.value("byte_fallback", false)) unsupported("BPE with byte_fallback (SentencePiece-style)", m);
  if (j.contains("normalizer") && !j["normalizer"].is_null()) unsupported("normalizer", j["normalizer"]);

  TokenizerVocab v;
  v.model = TokenizerModel::kByteLevelBpe;
  v.add_space_prefix = false;
  v.ignore_merges = m.value("ignore_merges", false);
  const nlohmann::json& pt = j.at("pre_tokenizer");
  if (detail::byte_level_with_regex(pt, true)) {
    v.pre = PreTokenizer::kGpt2;
  } else if (detail::is_type(pt, "Sequence") && pt.at("pretokenizers").size() == 2) {
    const nlohmann::json& a = pt["pretokenizers"][0];
    const nlohmann::json& b = pt["pretokenizers"][1];
    if (detail::is_type(a, "Digits") && a.value("individual_digits", false) &&
        detail::byte_level_with_regex(b, true)) {
      v.pre = PreTokenizer::kDigitsThenGpt2;
    } else if (detail::is_type(a, "Split") && a.value("behavior", "") == "Isolated" &&
               !a.value("invert", false) && a.contains("pattern") && a["pattern"].contains("Regex") &&
               detail::byte_level_with_regex(b, false)) {
      const std::string re = a["pattern"]["Regex"].get<std::string>();
      if (re == detail::kLlama3Regex) v.pre = PreTokenizer::kLlama3;
      else if (re == detail::kQwen2Regex) v.pre = PreTokenizer::kQwen2;
      else unsupported("pre-tokenizer regex", a["pattern"]);
    } else {
      unsupported("pre_tokenizer", pt);
    }
  } else {
    unsupported("pre_tokenizer", pt);
  }

  // Vocabulary: model.vocab plus added_tokens, by id; gaps become unused placeholders.
  std::vector<std::pair<int64_t, std::string>> entries;
  for (auto it = m.at("vocab").begin(); it != m.at("vocab").end(); ++it)
    entries.emplace_back(it.value().get<int64_t>(), it.key());
  std::vector<std::pair<int64_t, bool>> added;  // id, special
  if (j.contains("added_tokens"))
    for (const auto& t : j["added_tokens"]) {
      entries.emplace_back(t.at("id").get<int64_t>(), t.at("content").get<std::string>());
      added.emplace_back(t.at("id").get<int64_t>(), t.value("special", false));
    }
  int64_t max_id = -1;
  for (const auto& e : entries) {
    if (e.first < 0 || e.first >= INT32_MAX)
      throw Error(StatusCode::kFormatError, path + ": token id " + std::to_string(e.first) + " out of range");
    max_id = std::max(max_id, e.first);
  }
  v.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  v.types.assign(static_cast<size_t>(max_id + 1), TokenType::kUnused);
  for (const auto& e : entries) {
    v.tokens[static_cast<size_t>(e.first)] = e.second;
    v.types[static_cast<size_t>(e.first)] = TokenType::kNormal;
  }
  for (const auto& a : added)
    v.types[static_cast<size_t>(a.first)] = a.second ? TokenType::kControl : TokenType::kUserDefined;

  for (const auto& mg : m.at("merges")) {
    if (mg.is_array() && mg.size() == 2) {
      v.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos) throw Error(StatusCode::kFormatError, path + ": merge '" + s + "' has no space");
      v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
  }

  const auto id_of = [&](const std::string& content) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == content && v.types[i] != TokenType::kUnused) return static_cast<int32_t>(i);
    return -1;
  };
  if (j.contains("post_processor") && detail::is_type(j["post_processor"], "TemplateProcessing")) {
    const nlohmann::json& pp = j["post_processor"];
    const nlohmann::json& single = pp.at("single");
    if (!single.empty() && single[0].contains("SpecialToken")) {
      const std::string name = single[0]["SpecialToken"].at("id").get<std::string>();
      const int32_t id = id_of(name);
      if (id >= 0) {
        v.bos_id = id;
        v.add_bos = true;
      }
    }
  }
  // tokenizer_config.json beside it: bos/eos, add_bos_token, chat_template.
  const std::filesystem::path cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(read_text_file(cfg_path.string()));
    } catch (const nlohmann::json::exception& e) {
      throw Error(StatusCode::kFormatError, cfg_path.string() + ": not valid JSON: " + e.what());
    }
    if (cfg.contains("bos_token") && !cfg["bos_token"].is_null()) {
      const int32_t id = id_of(detail::json_token_content(cfg["bos_token"]));
      if (id >= 0) v.bos_id = id;
    }
    if (cfg.contains("eos_token") && !cfg["eos_token"].is_null())
      v.eos_id = id_of(detail::json_token_content(cfg["eos_token"]));
    if (cfg.contains("unk_token") && !cfg["unk_token"].is_null())
      v.unk_id = id_of(detail::json_token_content(cfg["unk_token"]));
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
      v.add_bos = cfg["add_bos_token"].get<bool>();
    if (cfg.contains("chat_template")) {
      const nlohmann::json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        v.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.value("name", "") == "default") v.chat_template = e.value("template", "");
      }
    }
  }
  if (v.add_bos && v.bos_id < 0) v.add_bos = false;
  return from_vocab(std::move(v));
}

CLUSCOMP_NAMESPACE_END
