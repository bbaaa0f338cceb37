#pragma once
/// The lookup tables a Tokenizer runs on, built once from a TokenizerVocab and validated there:
/// token texts and the bytes each stands for, the byte-level merges keyed by their id pair, the
/// token of each byte, and the special tokens by first byte. Immutable after construction, so
/// every encoder and decoder reads it from any thread. Internal: the public face is Tokenizer
/// (tokenizer.hpp).

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/io/tokenizer/vocab.hpp"

CLUSCOMP_NAMESPACE_BEGIN
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

/// A byte-level merge: its priority (lower merges first) and the token it produces.
struct TokenizerMerge {
  int32_t rank;
  int32_t merged;
};

/// The tables of one vocabulary. The constructor throws Error(kInvalidArgument / kFormatError)
/// naming the offending token or merge (see Tokenizer::from_vocab).
struct TokenizerTables {
  TokenizerModel model;
  PreTokenizer pre;
  std::vector<std::string> text;   // as stored
  std::vector<std::string> piece;  // the bytes each token stands for
  std::vector<TokenType> type;
  std::vector<float> score;
  std::unordered_map<std::string, int32_t> stored_to_id;
  std::unordered_map<std::string, int32_t> bytes_to_id;  // byte-level: normal tokens by their bytes
  std::unordered_map<uint64_t, TokenizerMerge> merges;
  std::array<int32_t, 256> byte_id{};  // byte-level: token of each byte; SentencePiece: <0xNN>
  std::array<std::vector<int32_t>, 256> specials_by_first_byte;  // longest first
  int32_t bos = -1, eos = -1, unk = -1;
  bool add_bos = false, add_space_prefix = false, ignore_merges = false;
  std::string chat_template;

  explicit TokenizerTables(TokenizerVocab v);
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
  /// The vocabulary these tables stand for (see Tokenizer::vocab).
  TokenizerVocab vocab() const;
};

inline TokenizerTables::TokenizerTables(TokenizerVocab v)
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
      if (!special && byte_level_to_bytes(text[i], bytes)) {
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
                     TokenizerMerge{static_cast<int32_t>(r), c->second});
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
        const int b = parse_byte_token(text[i]);
        if (b < 0)
          throw Error(StatusCode::kFormatError,
                      "byte token " + std::to_string(i) + " '" + text[i] + "' is not <0xNN>");
        piece[i] = std::string(1, static_cast<char>(b));
        if (byte_id[static_cast<size_t>(b)] < 0) byte_id[static_cast<size_t>(b)] = static_cast<int32_t>(i);
      } else if (type[i] == TokenType::kControl || type[i] == TokenType::kUnknown) {
        piece[i] = text[i];
      } else {
        piece[i] = replace_all(text[i], kSpmSpace, " ");
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

inline std::vector<std::pair<int32_t, int32_t>> TokenizerTables::merges_by_rank() const {
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

inline TokenizerVocab TokenizerTables::vocab() const {
  const TokenizerTables& d = *this;
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

}  // namespace detail
CLUSCOMP_NAMESPACE_END
