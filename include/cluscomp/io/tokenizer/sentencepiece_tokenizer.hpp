#pragma once
/// SentencePiece models (.model files) through the distribution's libsentencepiece.
///
/// OPTIONAL PIECE: this is the one cluscomp header that needs a third-party library at link time.
/// Include it only where libsentencepiece-dev is installed, and link `sentencepiece` (e.g.
/// `find_library(SP sentencepiece)` + `target_link_libraries(app PRIVATE ${SP})`). Everything
/// else in cluscomp stays header-only. GGUF files of LLaMA-1/2 type do not need it: their
/// SentencePiece-BPE vocabulary is handled natively by Tokenizer::from_gguf (tokenizer.hpp), and
/// to_vocab() below turns a .model file into that native form.

#if defined(__has_include)
#if !__has_include(<sentencepiece_processor.h>)
#error "cluscomp/io/tokenizer/sentencepiece_tokenizer.hpp needs <sentencepiece_processor.h> (Debian package libsentencepiece-dev)"
#endif
#endif

#include <sentencepiece_processor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"
#include "cluscomp/io/tokenizer/tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// A SentencePiece model run by libsentencepiece. Immutable and cheap to copy (shared processor);
/// const members are thread-safe (libsentencepiece's Encode/Decode are const) and deterministic
/// (no sampling).
class SentencePieceTokenizer {
 public:
  /// Loads a SentencePiece .model file; failure: Error(kIoError / kFormatError) with
  /// libsentencepiece's message.
  static SentencePieceTokenizer from_model_file(const std::string& path) {
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto st = sp->Load(path);
    if (!st.ok()) throw Error(StatusCode::kFormatError, path + ": libsentencepiece: " + st.ToString());
    return SentencePieceTokenizer(std::move(sp));
  }

  /// Loads a serialized ModelProto (the bytes of a .model file).
  static SentencePieceTokenizer from_serialized(const std::string& bytes) {
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto st = sp->LoadFromSerializedProto(bytes);
    if (!st.ok()) throw Error(StatusCode::kFormatError, "SentencePiece model: " + st.ToString());
    return SentencePieceTokenizer(std::move(sp));
  }

  /// Token ids of `text` as libsentencepiece segments it (with the model's own normaliser), BOS
  /// first when `add_bos`. Invalid UTF-8: Error(kInvalidArgument) naming the offset (we check
  /// before libsentencepiece, which would substitute U+FFFD silently).
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const {
    unicode::require_valid_utf8(text, "text to encode");
    std::vector<int> ids;
    const auto st = sp_->Encode(std::string(text), &ids);
    if (!st.ok()) throw Error(StatusCode::kInvalidArgument, "libsentencepiece Encode: " + st.ToString());
    std::vector<int32_t> out;
    out.reserve(ids.size() + 1);
    if (add_bos) {
      if (bos_id() < 0) throw Error(StatusCode::kInvalidArgument, "encode(add_bos): the model has no BOS token");
      out.push_back(bos_id());
    }
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }

  /// libsentencepiece's detokenisation (control tokens render as nothing, the dummy-prefix space
  /// is removed). Out-of-range id: Error(kOutOfRange).
  std::string decode(const std::vector<int32_t>& ids) const {
    std::vector<int> v;
    v.reserve(ids.size());
    for (int32_t id : ids) v.push_back(checked(id));
    std::string out;
    const auto st = sp_->Decode(v, &out);
    if (!st.ok()) throw Error(StatusCode::kInvalidArgument, "libsentencepiece Decode: " + st.ToString());
    return out;
  }

  /// The bytes one token stands for ("▁" as a space, <0xNN> as its byte, control tokens as
  /// nothing), for streaming output.
  std::string token_to_piece(int32_t id) const {
    const int k = checked(id);
    if (sp_->IsControl(k)) return "";
    const std::string& p = sp_->IdToPiece(k);
    if (sp_->IsByte(k)) {
      const int b = detail::parse_byte_token(p);
      return b < 0 ? p : std::string(1, static_cast<char>(b));
    }
    return detail::replace_all(p, detail::kSpmSpace, " ");
  }

  int32_t vocab_size() const { return sp_->GetPieceSize(); }
  int32_t bos_id() const { return sp_->bos_id(); }  // -1 when none
  int32_t eos_id() const { return sp_->eos_id(); }  // -1 when none
  int32_t unk_id() const { return sp_->unk_id(); }
  /// LLaMA-style models expect BOS.
  bool add_bos_default() const { return bos_id() >= 0; }

  /// The vocabulary in the native SentencePiece-BPE form (pieces, scores, token types, special
  /// ids), as GGUF "llama" files store it: Tokenizer::from_vocab(to_vocab()) needs no
  /// libsentencepiece. Exact for BPE models with an identity normaliser; other normalisers are
  /// not reproduced.
  TokenizerVocab to_vocab() const {
    TokenizerVocab v;
    v.model = TokenizerModel::kSentencePieceBpe;
    const int n = sp_->GetPieceSize();
    for (int i = 0; i < n; ++i) {
      v.tokens.push_back(sp_->IdToPiece(i));
      v.scores.push_back(sp_->GetScore(i));
      TokenType t = TokenType::kNormal;
      if (sp_->IsUnknown(i)) t = TokenType::kUnknown;
      else if (sp_->IsControl(i)) t = TokenType::kControl;
      else if (sp_->IsUnused(i)) t = TokenType::kUnused;
      else if (sp_->IsByte(i)) t = TokenType::kByte;
      v.types.push_back(t);
    }
    v.bos_id = sp_->bos_id();
    v.eos_id = sp_->eos_id();
    v.unk_id = sp_->unk_id();
    v.add_bos = v.bos_id >= 0;
    v.add_space_prefix = true;
    return v;
  }

  /// The processor itself, for what this wrapper does not cover.
  const sentencepiece::SentencePieceProcessor& processor() const { return *sp_; }

 private:
  explicit SentencePieceTokenizer(std::shared_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)) {}
  int checked(int32_t id) const {
    if (id < 0 || id >= vocab_size())
      throw Error(StatusCode::kOutOfRange, "token id " + std::to_string(id) +
                                               " is outside the vocabulary [0, " +
                                               std::to_string(vocab_size()) + ")");
    return id;
  }

  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

CLUSCOMP_NAMESPACE_END
