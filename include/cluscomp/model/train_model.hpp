#pragma once
/// A trainable copy of a whole LLaMA-family model for end-to-end recovery and codebook finetuning
/// (CLUSCOMP.md §3): token embedding -> N autograd::BasicTrainBlock -> final RMSNorm -> lm_head
/// (tied to the embedding or separate), built from the autograd ops (autograd/ops.hpp).
///
/// Trainable values (TrainModelOptions::train_all):
///  - false (default): the fp32 master codebooks of every clustered projection (codes frozen);
///  - true: "everything except the codes": the codebooks, both RMSNorm weights of every block, the
///    final norm, the embedding and, when it is not tied, lm_head. Dense projection matrices
///    (projections the student keeps unclustered, e.g. compressed with --matrices) stay FROZEN in
///    both modes: they are not part of the codebook model and training them would need a dense
///    (out, in) gradient and 2 AdamW moments per weight, i.e. the memory of full finetuning.
///    Projection biases (Qwen2's q/k/v, LLaMA's with attention_bias or mlp_bias) and lm_head's bias
///    stay FROZEN in both modes too: the block backward computes no bias gradients.
///
/// Forward over one window of ids at positions 0..n-1 (no KV cache) keeps every block's Saved
/// (or, with `recompute`, only every block's input; each block's backward then reruns its
/// forward: activation checkpointing at block granularity). Backward runs the ops' backwards in
/// reverse: lm_head (dense linear; a tied lm_head adds its weight gradient to the embedding's),
/// final RMSNorm, the blocks from last to first, and the embedding scatter when it trains.
///
/// Numerics: T = float trains (fp32 activations and products, as the TrainBlock: its forward is the
/// runtime's bit for bit while the master values hold the runtime's values, so the logits of a
/// float TrainModel equal LlamaModel::forward's); T = double runs the same code in double for
/// finite-difference checks. Deterministic whatever the thread count. Not thread-safe: one
/// forward/backward at a time.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/autograd/ops.hpp"
#include "cluscomp/model/train_block.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Options of a TrainModel.
struct TrainModelOptions {
  /// Train everything except the codes (see the file comment); false: codebooks only.
  bool train_all = false;
  /// Activation checkpointing per block: forward keeps only each block's input.
  bool recompute = false;
  /// Where the work runs. Only kCpu has a backend today; any other device is an Error
  /// (backend_status, host/device_status.hpp) before any work, never a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
};

template <class T>
class BasicTrainModel {
 public:
  using Param = autograd::BasicParameter<T>;
  using Block = autograd::BasicTrainBlock<T>;

  /// Copies what it needs from `m` (the student as loaded; `m` may be destroyed afterwards).
  /// Throws Error(kInvalidArgument) for inconsistent weights (as TrainBlock does).
  explicit BasicTrainModel(const LlamaModel& m, const TrainModelOptions& opt = {}) : opt_(opt) {
    throw_if_error(backend_status(opt.device, "train model"));
    const LlamaConfig& c = m.config();
    const LlamaWeights& w = m.weights();
    H_ = c.hidden_size;
    V_ = c.vocab_size;
    eps_ = static_cast<float>(c.rms_norm_eps);
    // A frozen fp32 embedding is shared with `m` (kept alive by the shared_ptr), not copied: it is
    // the largest tensor of a small model (113 MB for SmolLM2-135M).
    (void)w.embed_fp32("training");  // a stored embedding is an Error here, never a null read
    if constexpr (std::is_same_v<T, float>) {
      if (!opt_.train_all) embed_shared_ = w.embed;
    }
    if (!embed_shared_) embed_.assign(w.embed_fp32("training").begin(), w.embed_fp32("training").end());
    final_norm_.assign(w.final_norm.begin(), w.final_norm.end());
    tied_ = w.lm_head.shares_weight_with(w.embed.get());
    if (!tied_) {
      const float* lw = w.lm_head.dense_weight();
      if (!lw)
        throw Error(StatusCode::kInvalidArgument, "train model: lm_head is not a dense matrix (a clustered lm_head "
                                                  "is not supported)");
      lm_head_.assign(lw, lw + V_ * H_);
    }
    lm_bias_.assign(w.lm_head.bias().begin(), w.lm_head.bias().end());
    if (opt_.train_all) {
      embed_grad_.assign(embed_.size(), T(0));
      final_norm_grad_.assign(final_norm_.size(), T(0));
      if (!tied_) lm_head_grad_.assign(lm_head_.size(), T(0));
    }
    autograd::TrainBlockOptions bo;
    bo.recompute = opt_.recompute;
    bo.device = opt_.device;
    bo.train_norms = opt_.train_all;
    blocks_.reserve(w.blocks.size());
    for (const LlamaBlock& b : w.blocks) blocks_.emplace_back(c, b, bo);
  }

  /// What forward keeps for backward. Movable and copyable (owns plain buffers).
  struct Saved {
    int64_t n = 0;
    std::vector<int32_t> ids;                    // (n)
    std::vector<typename Block::Saved> blocks;   // one per block
    std::vector<T> x_last;                       // (n, hidden) input of the final norm
    std::vector<T> h;                            // (n, hidden) final-norm output (lm_head input)
    std::vector<T> rstd;                         // (n) final-norm scales
    int64_t bytes() const {
      int64_t b = static_cast<int64_t>((x_last.size() + h.size() + rstd.size()) * sizeof(T) + ids.size() * 4);
      for (const auto& s : blocks) b += s.bytes();
      return b;
    }
  };

  /// logits (n, vocab) of the window `ids` (n tokens at positions 0..n-1). `saved` may be null
  /// (inference only); otherwise it is overwritten with what backward needs. Error(kOutOfRange)
  /// for an id outside the vocabulary, kInvalidArgument for n < 1 or null pointers.
  void forward(const int32_t* ids, int64_t n, T* logits, Saved* saved, ThreadPool* pool = nullptr) {
    autograd::detail::require(n >= 1 && ids && logits, "train model forward",
                              "need n >= 1 (got " + std::to_string(n) + ") and non-null ids and logits");
    const size_t nh = autograd::detail::count(n, H_);
    std::vector<T> a(nh), b(nh);
    autograd::embedding_forward(embed_data(), V_, H_, ids, n, a.data());
    if (saved) {
      saved->n = n;
      saved->ids.assign(ids, ids + n);
      saved->blocks.resize(blocks_.size());
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      blocks_[i].forward(a.data(), n, b.data(), saved ? &saved->blocks[i] : nullptr, pool);
      a.swap(b);
    }
    std::vector<T> h(nh);
    auto ctx = autograd::rms_norm_forward(a.data(), final_norm_.data(), eps_, n, H_, h.data(), pool);
    autograd::dense_linear_forward(lm_weight(), h.data(), n, logits, pool);
    if (saved) {
      saved->x_last = std::move(a);
      saved->h = std::move(h);
      saved->rstd = std::move(ctx.rstd);
    }
  }

  /// Adds d(loss)/d(every trainable value) given dlogits (n, vocab) = d(loss)/d(logits).
  /// Deterministic. Error(kInvalidArgument) for an empty or mis-sized Saved or null dlogits.
  void backward(const Saved& s, const T* dlogits, ThreadPool* pool = nullptr) {
    const int64_t n = s.n;
    autograd::detail::require(n >= 1 && s.blocks.size() == blocks_.size() &&
                                  static_cast<int64_t>(s.x_last.size()) == n * H_ &&
                                  static_cast<int64_t>(s.h.size()) == n * H_ &&
                                  static_cast<int64_t>(s.rstd.size()) == n &&
                                  static_cast<int64_t>(s.ids.size()) == n,
                              "train model backward", "saved activations are empty or not of this model; call "
                                                      "forward with a Saved first");
    autograd::detail::require(dlogits != nullptr, "train model backward", "null dlogits");
    const size_t nh = autograd::detail::count(n, H_);
    std::vector<T> dh(nh), dx(nh), dprev(nh);
    {
      autograd::DenseLinearGrads<T> g;
      g.dx = dh.data();
      if (opt_.train_all) g.dw = tied_ ? embed_grad_.data() : lm_head_grad_.data();
      autograd::dense_linear_backward(autograd::DenseLinearCtx<T>{lm_weight(), s.h.data(), n}, dlogits, g, pool);
    }
    autograd::RmsNormCtx<T> fn{s.x_last.data(), final_norm_.data(), n, H_, s.rstd};
    autograd::rms_norm_backward(fn, dh.data(), dx.data(), false, opt_.train_all ? final_norm_grad_.data() : nullptr,
                                pool);
    for (size_t i = blocks_.size(); i-- > 0;) {
      const bool need_dx = i > 0 || opt_.train_all;
      blocks_[i].backward(s.blocks[i], dx.data(), need_dx ? dprev.data() : nullptr, pool);
      dx.swap(dprev);
    }
    if (opt_.train_all)
      autograd::embedding_backward(autograd::EmbeddingCtx{s.ids.data(), n, V_, H_}, dx.data(), embed_grad_.data(),
                                   pool);
  }

  /// Sets every gradient to zero.
  void zero_grad() {
    for (Block& b : blocks_) b.zero_grad();
    std::fill(embed_grad_.begin(), embed_grad_.end(), T(0));
    std::fill(final_norm_grad_.begin(), final_norm_grad_.end(), T(0));
    std::fill(lm_head_grad_.begin(), lm_head_grad_.end(), T(0));
  }

  /// Trainable tensors with their HF-style names: "model.layers.<i>.<proj>.centroids" for every
  /// codebook layer (blocks in order), with train_all also "model.layers.<i>.input_layernorm.weight",
  /// "...post_attention_layernorm.weight", then "model.embed_tokens.weight", "model.norm.weight" and
  /// "lm_head.weight" (untied only). Pointers stay valid for the model's lifetime.
  std::vector<Param> parameters() {
    std::vector<Param> out;
    for (size_t i = 0; i < blocks_.size(); ++i)
      for (Param p : blocks_[i].parameters()) {
        if (p.name.rfind("model.", 0) != 0) p.name = "model.layers." + std::to_string(i) + "." + p.name;
        out.push_back(std::move(p));
      }
    if (opt_.train_all) {
      out.push_back(Param{"model.embed_tokens.weight", embed_.data(), embed_grad_.data(),
                          static_cast<int64_t>(embed_.size())});
      out.push_back(Param{"model.norm.weight", final_norm_.data(), final_norm_grad_.data(), H_});
      if (!tied_)
        out.push_back(Param{"lm_head.weight", lm_head_.data(), lm_head_grad_.data(),
                            static_cast<int64_t>(lm_head_.size())});
    }
    return out;
  }

  /// Number of trainable values.
  int64_t trainable_count() const {
    int64_t n = 0;
    for (const Block& b : blocks_) n += b.trainable_count();
    if (opt_.train_all)
      n += static_cast<int64_t>(embed_.size() + final_norm_.size() + (tied_ ? 0 : lm_head_.size()));
    return n;
  }

  /// Bytes forward keeps per window of n tokens (every block's Saved, the final norm's input and
  /// output and scales, the ids); the logits and their gradient (2 n vocab values) are the
  /// caller's.
  int64_t saved_bytes(int64_t n) const {
    int64_t b = (2 * n * H_ + n) * static_cast<int64_t>(sizeof(T)) + 4 * n;
    for (const Block& blk : blocks_) b += blk.saved_bytes(n);
    return b;
  }

  /// Rough upper bound of backward's transient memory for n tokens (the largest block workspace
  /// plus three (n, hidden) buffers).
  int64_t backward_workspace_bytes(int64_t n) const {
    int64_t w = 0;
    for (const Block& blk : blocks_) w = std::max(w, blk.backward_workspace_bytes(n));
    return w + 3 * n * H_ * static_cast<int64_t>(sizeof(T));
  }

  const TrainModelOptions& options() const { return opt_; }
  bool tied() const { return tied_; }
  int64_t hidden_size() const { return H_; }
  int64_t vocab_size() const { return V_; }
  std::vector<Block>& blocks() { return blocks_; }
  const std::vector<Block>& blocks() const { return blocks_; }
  /// Master values (vocab, hidden), (hidden), and (vocab, hidden) (empty when tied).
  const std::vector<T>& embedding() const {
    if constexpr (std::is_same_v<T, float>) {
      if (embed_shared_) return *embed_shared_;
    }
    return embed_;
  }
  const std::vector<T>& final_norm() const { return final_norm_; }
  const std::vector<T>& lm_head() const { return lm_head_; }

 private:
  autograd::DenseLinearWeight<T> lm_weight() const {
    // No cached transpose: a trainable (or tied, trainable) weight changes every step.
    return autograd::DenseLinearWeight<T>{tied_ ? embed_data() : lm_head_.data(), nullptr,
                                          lm_bias_.empty() ? nullptr : lm_bias_.data(), V_, H_};
  }

  TrainModelOptions opt_;
  int64_t H_ = 0, V_ = 0;
  float eps_ = 0.0f;
  bool tied_ = true;
  const T* embed_data() const { return embedding().data(); }

  std::vector<T> embed_, final_norm_, lm_head_, lm_bias_;
  std::shared_ptr<const std::vector<float>> embed_shared_;  // float, frozen: the student's own
  std::vector<T> embed_grad_, final_norm_grad_, lm_head_grad_;
  std::vector<Block> blocks_;
};

/// The fp32 trainable model recovery and finetuning use.
using TrainModel = BasicTrainModel<float>;

CLUSCOMP_NAMESPACE_END
