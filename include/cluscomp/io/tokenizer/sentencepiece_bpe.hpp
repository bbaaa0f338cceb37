#pragma once
/// The SentencePiece-style BPE encoder of LLaMA 1/2 GGUF vocabularies (tokenizer.ggml.model =
/// "llama"): score-ordered merges over code points, "▁" for spaces, <0xNN> byte fallback. Native
/// (no libsentencepiece; for a .model file see sentencepiece_tokenizer.hpp). Deterministic; all
/// scratch state lives inside each call, so it is thread-safe.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

/// SentencePiece BPE of one text fragment: spaces become "▁" (plus one in front when
/// `space_prefix`), start from code points, repeatedly merge the adjacent pair whose concatenation
/// is the highest-scoring piece (leftmost on ties); pieces that are not tokens fall back to
/// <0xNN> byte tokens, else to the unknown token.
inline void encode_sentencepiece(const TokenizerTables& tables, std::string_view frag, bool space_prefix,
                                 std::vector<int32_t>& out) {
  std::string s;
  s.reserve(frag.size() * 2 + 3);
  if (space_prefix) s += kSpmSpace;
  for (char c : frag) {
    if (c == ' ') s += kSpmSpace;
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
    const auto it = tables.stored_to_id.find(key);
    if (it == tables.stored_to_id.end()) return;
    const TokenType t = tables.type[static_cast<size_t>(it->second)];
    if (t != TokenType::kNormal && t != TokenType::kUserDefined && t != TokenType::kUnused) return;
    heap.push_back({tables.score[static_cast<size_t>(it->second)], left, l.len + r.len});
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
    const auto it = tables.stored_to_id.find(std::string(piece_text));
    if (it != tables.stored_to_id.end() && tables.type[static_cast<size_t>(it->second)] != TokenType::kUnused &&
        tables.type[static_cast<size_t>(it->second)] != TokenType::kControl) {
      out.push_back(it->second);
      return;
    }
    if (it != tables.stored_to_id.end()) {
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
      const int32_t b = tables.byte_id[static_cast<uint8_t>(ch)];
      if (b >= 0) {
        out.push_back(b);
      } else if (tables.unk >= 0) {
        out.push_back(tables.unk);
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

}  // namespace detail
CLUSCOMP_NAMESPACE_END
