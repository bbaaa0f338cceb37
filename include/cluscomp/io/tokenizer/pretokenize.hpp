#pragma once
/// The pre-tokenisers of byte-level BPE models: the regexes of GPT-2, StarCoder/SmolLM (digits
/// isolated first), LLaMA 3 and Qwen 2, written as hand-made scanners over Unicode character
/// classes (no std::regex: it is slow and has no Unicode classes). Each scanner returns the same
/// pieces as the leftmost-first regex it names, on any valid UTF-8.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Which pre-tokeniser regex a byte-level BPE model uses.
enum class PreTokenizer {
  /// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  /// StarCoder, SmolLM, Refact, Command-R: every \p{N} character isolated, then GPT-2 on the rest.
  kDigitsThenGpt2,
  /// LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  ///          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  /// Qwen 2: LLaMA 3's regex with \p{N} (one digit) instead of \p{N}{1,3}.
  kQwen2,
};

inline const char* pre_tokenizer_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kGpt2: return "gpt2";
    case PreTokenizer::kDigitsThenGpt2: return "digits+gpt2 (smollm/starcoder)";
    case PreTokenizer::kLlama3: return "llama3";
    case PreTokenizer::kQwen2: return "qwen2";
  }
  return "unknown";
}

/// The canonical GGUF `tokenizer.ggml.pre` name of a pre-tokeniser (one that
/// pre_tokenizer_from_gguf_name maps back to it); used to store a tokenizer's state.
inline const char* pre_tokenizer_gguf_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kGpt2: return "gpt2";
    case PreTokenizer::kDigitsThenGpt2: return "smollm";
    case PreTokenizer::kLlama3: return "llama3";
    case PreTokenizer::kQwen2: return "qwen2";
  }
  return "unknown";
}

/// Maps a GGUF `tokenizer.ggml.pre` value to a pre-tokeniser (the names llama.cpp's converter
/// writes). Throws Error(kUnsupported) naming the value when it is not one we implement.
inline PreTokenizer pre_tokenizer_from_gguf_name(const std::string& name) {
  static const char* const gpt2[] = {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4",
                                     "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
                                     "roberta-bpe", "trillion", "granite-docling"};
  static const char* const digits[] = {"smollm", "starcoder", "refact", "command-r", "codeshell",
                                       "exaone", "minerva-7b"};
  static const char* const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx",
                                       "smaug-bpe", "pixtral"};
  static const char* const qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"};
  for (const char* n : gpt2) if (name == n) return PreTokenizer::kGpt2;
  for (const char* n : digits) if (name == n) return PreTokenizer::kDigitsThenGpt2;
  for (const char* n : llama3) if (name == n) return PreTokenizer::kLlama3;
  for (const char* n : qwen2) if (name == n) return PreTokenizer::kQwen2;
  throw Error(StatusCode::kUnsupported,
              "tokenizer.ggml.pre = '" + name +
                  "' is not a supported pre-tokeniser (supported: gpt2 family, smollm/starcoder "
                  "family, llama3 family, qwen2 family)");
}

namespace detail {

using unicode::CharClass;

/// The decoded text a scanner walks: code points, their classes, and byte offsets (n + 1).
struct DecodedText {
  std::vector<uint32_t> cp;
  std::vector<CharClass> cls;
  std::vector<uint32_t> offset;

  void assign(std::string_view s) {
    cp.clear();
    cls.clear();
    offset.clear();
    cp.reserve(s.size());
    cls.reserve(s.size());
    offset.reserve(s.size() + 1);
    size_t i = 0;
    while (i < s.size()) {
      uint32_t c = 0;
      const size_t len = unicode::decode_utf8(s, i, c);
      if (len == 0) unicode::require_valid_utf8(s, "text");  // throws with the offset
      cp.push_back(c);
      cls.push_back(unicode::char_class(c));
      offset.push_back(static_cast<uint32_t>(i));
      i += len;
    }
    offset.push_back(static_cast<uint32_t>(s.size()));
  }
};

inline size_t run_of(const DecodedText& t, size_t i, size_t end, CharClass c) {
  while (i < end && t.cls[i] == c) ++i;
  return i;
}

inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

inline uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/// Length in code points of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
inline size_t contraction_at(const DecodedText& t, size_t i, size_t end, bool ignore_case) {
  if (t.cp[i] != '\'' || i + 1 >= end) return 0;
  const auto low = [&](size_t k) { return ignore_case ? ascii_lower(t.cp[k]) : t.cp[k]; };
  const uint32_t c1 = low(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 < end) {
    const uint32_t c2 = low(i + 2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  }
  return 0;
}

/// \s+(?!\S)|\s+ at a whitespace position i: the run, less its last character when a
/// non-space follows and the run is longer than one.
inline size_t whitespace_run(const DecodedText& t, size_t i, size_t end) {
  const size_t j = run_of(t, i, end, CharClass::kSpace);
  if (j == end || j - i == 1) return j;
  return j - 1;
}

/// One GPT-2 regex match starting at i (i < end); returns its end. Every position matches.
inline size_t match_gpt2(const DecodedText& t, size_t i, size_t end) {
  if (const size_t c = contraction_at(t, i, end, false)) return i + c;
  const size_t k = (t.cp[i] == ' ' && i + 1 < end && t.cls[i + 1] != CharClass::kSpace) ? i + 1 : i;
  const CharClass ck = t.cls[k];
  if (ck != CharClass::kSpace) return run_of(t, k, end, ck);  // letters, numbers or "other"
  return whitespace_run(t, i, end);
}

/// One LLaMA 3 / Qwen 2 regex match starting at i; `max_digits` is 3 (LLaMA 3) or 1 (Qwen 2).
inline size_t match_llama3(const DecodedText& t, size_t i, size_t end, size_t max_digits) {
  if (const size_t c = contraction_at(t, i, end, true)) return i + c;
  const CharClass c0 = t.cls[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0 == CharClass::kLetter) return run_of(t, i, end, CharClass::kLetter);
  if (c0 != CharClass::kNumber && !is_crlf(t.cp[i]) && i + 1 < end &&
      t.cls[i + 1] == CharClass::kLetter)
    return run_of(t, i + 1, end, CharClass::kLetter);
  // \p{N}{1,3}
  if (c0 == CharClass::kNumber) {
    size_t j = i;
    while (j < end && j - i < max_digits && t.cls[j] == CharClass::kNumber) ++j;
    return j;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  const size_t k = (t.cp[i] == ' ' && i + 1 < end && t.cls[i + 1] == CharClass::kOther) ? i + 1 : i;
  if (t.cls[k] == CharClass::kOther) {
    size_t j = run_of(t, k, end, CharClass::kOther);
    while (j < end && is_crlf(t.cp[j])) ++j;
    return j;
  }
  // \s*[\r\n]+ : the whitespace run up to and including its last line break, if it has one.
  const size_t j = run_of(t, i, end, CharClass::kSpace);
  for (size_t p = j; p > i; --p)
    if (is_crlf(t.cp[p - 1])) return p;
  return whitespace_run(t, i, end);
}

}  // namespace detail

/// Splits valid UTF-8 `text` into pre-tokens, appending (byte offset, byte length) pairs to `out`
/// in order; the pieces tile the text exactly. Throws Error(kInvalidArgument) on invalid UTF-8.
/// `scratch` is reused between calls to avoid allocation. Deterministic.
inline void pre_tokenize(PreTokenizer kind, std::string_view text,
                         std::vector<std::pair<size_t, size_t>>& out, detail::DecodedText& scratch) {
  detail::DecodedText& t = scratch;
  t.assign(text);
  const size_t n = t.cp.size();
  const auto emit = [&](size_t a, size_t b) {
    out.emplace_back(t.offset[a], t.offset[b] - t.offset[a]);
  };
  const auto gpt2_range = [&](size_t a, size_t b) {
    while (a < b) {
      const size_t e = detail::match_gpt2(t, a, b);
      emit(a, e);
      a = e;
    }
  };
  switch (kind) {
    case PreTokenizer::kGpt2:
      gpt2_range(0, n);
      break;
    case PreTokenizer::kDigitsThenGpt2: {
      size_t a = 0;
      for (size_t i = 0; i < n; ++i) {
        if (t.cls[i] != unicode::CharClass::kNumber) continue;
        gpt2_range(a, i);
        emit(i, i + 1);
        a = i + 1;
      }
      gpt2_range(a, n);
      break;
    }
    case PreTokenizer::kLlama3:
    case PreTokenizer::kQwen2: {
      const size_t digits = kind == PreTokenizer::kLlama3 ? 3 : 1;
      size_t a = 0;
      while (a < n) {
        const size_t e = detail::match_llama3(t, a, n, digits);
        emit(a, e);
        a = e;
      }
      break;
    }
  }
}

/// Convenience overload returning the pieces as strings (tests, debugging).
inline std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text) {
  std::vector<std::pair<size_t, size_t>> spans;
  detail::DecodedText scratch;
  pre_tokenize(kind, text, spans, scratch);
  std::vector<std::string> out;
  out.reserve(spans.size());
  for (const auto& s : spans) out.emplace_back(text.substr(s.first, s.second));
  return out;
}

CLUSCOMP_NAMESPACE_END
