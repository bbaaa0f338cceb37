#pragma once
/// Text <-> ids for either model: encode() splits the text at special tokens (user-defined always,
/// control tokens on request) and hands the text between them to the model's encoder
/// (byte_level_bpe.hpp or sentencepiece_bpe.hpp); decode() concatenates token bytes, undoing the
/// SentencePiece space prefix. The semantics are documented on Tokenizer::encode / decode.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/byte_level_bpe.hpp"
#include "cluscomp/io/tokenizer/sentencepiece_bpe.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

/// Tokenizer::encode on the tables (see there for the semantics and errors).
inline std::vector<int32_t> encode_text(const TokenizerTables& t, std::string_view s, bool want_bos,
                                        bool parse_special) {
  unicode::require_valid_utf8(s, "text to encode");
  std::vector<int32_t> out;
  out.reserve(s.size() / 3 + 4);
  if (want_bos) {
    if (t.bos < 0) throw Error(StatusCode::kInvalidArgument, "encode(add_bos): the model has no BOS token");
    out.push_back(t.bos);
  }
  bool prev_special = true;  // SentencePiece: a space prefix at the start and after specials
  const auto emit_text = [&](std::string_view frag) {
    if (frag.empty()) return;
    if (t.model == TokenizerModel::kByteLevelBpe) {
      encode_byte_level(t, frag, out);
    } else {
      encode_sentencepiece(t, frag, t.add_space_prefix && prev_special, out);
    }
    prev_special = false;
  };
  size_t start = 0;
  size_t i = 0;
  while (i < s.size()) {
    int32_t found = -1;
    for (int32_t id : t.specials_by_first_byte[static_cast<uint8_t>(s[i])]) {
      const std::string& special = t.text[static_cast<size_t>(id)];
      if (!parse_special && t.type[static_cast<size_t>(id)] == TokenType::kControl) continue;
      if (special.size() <= s.size() - i && std::memcmp(s.data() + i, special.data(), special.size()) == 0) {
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
    i += t.text[static_cast<size_t>(found)].size();
    start = i;
  }
  emit_text(s.substr(start));
  return out;
}

/// Tokenizer::decode on the tables (see there for the semantics and errors).
inline std::string decode_ids(const TokenizerTables& tables, const std::vector<int32_t>& ids, bool skip_special) {
  std::string out;
  bool prev_special = true;
  for (int32_t id : ids) {
    const size_t k = tables.checked(id);
    const TokenType t = tables.type[k];
    if (t == TokenType::kControl || t == TokenType::kUserDefined) {
      if (!(skip_special && t == TokenType::kControl)) out += tables.piece[k];
      prev_special = true;
      continue;
    }
    const std::string& p = tables.piece[k];
    if (tables.model == TokenizerModel::kSentencePieceBpe && tables.add_space_prefix && prev_special &&
        !p.empty() && p[0] == ' ') {
      out.append(p, 1, std::string::npos);
    } else {
      out += p;
    }
    prev_special = false;
  }
  return out;
}

}  // namespace detail
CLUSCOMP_NAMESPACE_END
