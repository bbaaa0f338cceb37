#pragma once
/// The GPT-2-style byte-level BPE encoder: a text fragment (no special tokens in it) is cut into
/// pre-tokens by the model's pre-tokeniser regex (pretokenize.hpp), and each pre-token is merged
/// from its bytes by merge rank. Bytes the vocabulary lacks are dropped, as HF tokenizers and
/// llama.cpp do. Deterministic; the per-word cache lives inside each call, so the shared tables
/// stay read-only and the encoder is thread-safe.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

/// Byte-level BPE of one pre-token: start from its bytes, repeatedly merge the adjacent pair with
/// the lowest rank (leftmost on ties) until none applies. O(n log n) with a heap of candidates.
inline void bpe_word(const TokenizerTables& t, std::string_view word, std::vector<int32_t>& out) {
  if (t.ignore_merges) {
    const auto it = t.bytes_to_id.find(std::string(word));
    if (it != t.bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const size_t n = word.size();
  if (n == 1) {
    const int32_t id = t.byte_id[static_cast<uint8_t>(word[0])];
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
    const int32_t id = t.byte_id[static_cast<uint8_t>(word[k])];
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
    const auto it = t.merges.find(
        TokenizerTables::pair_key(sym[static_cast<size_t>(left)].id, sym[static_cast<size_t>(right)].id));
    if (it == t.merges.end()) return;
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
    const auto it = t.merges.find(TokenizerTables::pair_key(l.id, r.id));
    if (it == t.merges.end() || it->second.merged != c.merged) continue;  // stale
    l.id = c.merged;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = c.pos;
    push(l.prev);
    push(c.pos);
  }
  for (int32_t k = 0; k >= 0; k = sym[static_cast<size_t>(k)].next) out.push_back(sym[static_cast<size_t>(k)].id);
}

/// Appends the ids of `frag` (no special tokens in it) to `out`.
inline void encode_byte_level(const TokenizerTables& t, std::string_view frag, std::vector<int32_t>& out) {
  std::vector<std::pair<size_t, size_t>> spans;
  detail::DecodedText scratch;
  pre_tokenize(t.pre, frag, spans, scratch);
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
    bpe_word(t, word, tmp);
    cache.emplace(word, std::make_pair(static_cast<uint32_t>(store.size()), static_cast<uint32_t>(tmp.size())));
    store.insert(store.end(), tmp.begin(), tmp.end());
    out.insert(out.end(), tmp.begin(), tmp.end());
  }
}

}  // namespace detail
CLUSCOMP_NAMESPACE_END
