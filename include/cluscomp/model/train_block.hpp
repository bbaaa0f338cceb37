#pragma once
/// A trainable copy of one LLaMA decoder block for block-wise codebook finetuning (CLUSCOMP.md §2):
/// codebook Linear layers become fp32 master codebooks (codes frozen); dense Linear layers and the
/// two RMSNorms are frozen (TrainBlockOptions::train_norms makes the norms trainable too).
///
/// Forward: the runtime's per-block body (LlamaModel::forward_hidden) at positions 0..n-1 without a
/// KV cache, built from the autograd ops (autograd/ops.hpp), whose float forwards call the runtime
/// kernels: dense layers matmul_nt, codebook layers lookup_gemm over the fp32 master centroids,
/// rms_norm, apply_rope, causal_attention, swiglu, the same residual adds. So a float TrainBlock
/// reproduces the runtime's block output BIT FOR BIT as long as its master centroids hold the
/// runtime's values (before any update; tests/cpu/test_autograd_block.cpp checks it).
///
/// Backward: the ops' backwards in reverse order. Codebook layers decode their dense Wt once per
/// backward (the centroids change every step) and use dense products; the centroid gradient is
/// dWt = x^T dy scattered over the codes (CLUSCOMP.md §2). Attention recomputes its softmax.
/// Memory: Saved holds (4*hidden + 2*q_dim + 2*kv_dim + 2*intermediate + 2) values per token, or
/// only x (hidden per token) with `recompute` (activation checkpointing: backward reruns the
/// forward first); saved_bytes() reports it. Backward adds transient buffers of a few (n, width)
/// activations and one layer's (in, out) matrices.
///
/// Numerics: T = float for training (fp32 activations, fp32 products, double where ops say so);
/// T = double runs the same code with double arithmetic for finite-difference checks.
/// Determinism: every op is deterministic, so forward, backward and gradients never depend on the
/// thread count of `pool`. Not thread-safe: one forward/backward at a time per object.
///
/// Why in model/ while the class stays in namespace autograd: the block is built from the runtime's
/// LlamaBlock/Linear and LlamaConfig and writes back into them, so it sits above model/ and io/;
/// autograd/ (the ops, losses, AdamW) stays below them and knows no model. The namespace is the
/// API (autograd::TrainBlock) and names what the class is, a block of autograd ops; the folder
/// names what it depends on (scripts/check_layers.py, docs/architecture.md).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/autograd/ops.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/model/linear.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/rope.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// Options of a TrainBlock.
struct TrainBlockOptions {
  /// Activation checkpointing: forward keeps only the block input; backward recomputes the rest.
  bool recompute = false;
  /// Also train the two RMSNorm weights (recovery's "everything except the codes").
  bool train_norms = false;
  /// Where the work runs. Only kCpu has a backend today; any other device is an Error
  /// (backend_status, host/device_status.hpp) before any work, never a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
};

template <class T>
class BasicTrainBlock {
 public:
  using Param = BasicParameter<T>;

  /// Copies what it needs from `b`. Throws Error(kInvalidArgument) naming the layer whose shape
  /// disagrees with `c` (or config errors from LlamaConfig::validate).
  BasicTrainBlock(const LlamaConfig& c, const LlamaBlock& b, const TrainBlockOptions& opt = {}) : opt_(opt) {
    throw_if_error(backend_status(opt.device, "train block"));
    throw_if_error(c.validate());
    H_ = c.hidden_size;
    F_ = c.intermediate_size;
    heads_ = c.num_attention_heads;
    kv_heads_ = c.num_key_value_heads;
    hd_ = c.head_dim;
    Q_ = c.q_dim();
    KV_ = c.kv_dim();
    window_ = c.sliding_window;
    eps_ = static_cast<float>(c.rms_norm_eps);
    scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd_)));
    inv_freq_ = rope_inverse_frequencies(model_detail::rope_params_of(c));
    model_detail::require_size(b.attn_norm, H_, "train block: input_layernorm.weight");
    model_detail::require_size(b.ffn_norm, H_, "train block: post_attention_layernorm.weight");
    attn_norm_.assign(b.attn_norm.begin(), b.attn_norm.end());
    ffn_norm_.assign(b.ffn_norm.begin(), b.ffn_norm.end());
    if (opt_.train_norms) {
      attn_norm_grad_.assign(attn_norm_.size(), T(0));
      ffn_norm_grad_.assign(ffn_norm_.size(), T(0));
    }
    const Linear* src[kLayers] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
    const int64_t outs[kLayers] = {Q_, KV_, KV_, H_, F_, F_, H_};
    const int64_t ins[kLayers] = {H_, H_, H_, Q_, H_, H_, F_};
    for (int l = 0; l < kLayers; ++l) init_layer(layers_[l], *src[l], kRoleNames[l], outs[l], ins[l]);
  }

  /// Activations kept by forward for backward. Movable and copyable (owns plain buffers).
  struct Saved {
    int64_t n = 0;
    bool full = false;  // false: only x (recompute mode), the rest is rebuilt by backward
    std::vector<T> x;   // (n, hidden) block input
    std::vector<T> h1, q, k, v, attn, x2, h2, gate, up;  // see forward
    std::vector<T> rstd1, rstd2;                        // (n) RMSNorm scales
    /// Bytes held.
    int64_t bytes() const {
      size_t e = x.size() + h1.size() + q.size() + k.size() + v.size() + attn.size() + x2.size() + h2.size() +
                 gate.size() + up.size() + rstd1.size() + rstd2.size();
      return static_cast<int64_t>(e * sizeof(T));
    }
  };

  /// y (n, hidden) = block(x (n, hidden)) at positions 0..n-1 (no KV cache). `saved` may be null
  /// (inference only); otherwise it is overwritten with what backward needs. x and y may alias.
  /// Float: bit for bit the runtime's block while the centroids hold the runtime's values.
  /// Deterministic. Error(kInvalidArgument) for n < 1 or null pointers.
  void forward(const T* x, int64_t n, T* y, Saved* saved, ThreadPool* pool = nullptr) {
    detail::require(n >= 1, "train block forward", "token count must be >= 1, got " + std::to_string(n));
    detail::require(x != nullptr && y != nullptr, "train block forward", "null x or y");
    Saved local;
    Saved& s = (saved && !opt_.recompute) ? *saved : local;
    run_forward(x, n, y, s, pool);
    if (saved && opt_.recompute) {
      *saved = Saved();
      saved->n = n;
      saved->full = false;
      saved->x = std::move(s.x);
    }
  }

  /// Adds d(loss)/d(centroids) of every codebook layer (and of the norm weights with train_norms)
  /// given dy (n, hidden); writes dx (n, hidden) when dx != nullptr. Deterministic.
  /// Error(kInvalidArgument) for an empty or mis-sized Saved or null dy.
  void backward(const Saved& s, const T* dy, T* dx, ThreadPool* pool = nullptr) {
    detail::require(s.n >= 1 && static_cast<int64_t>(s.x.size()) == s.n * H_, "train block backward",
                    "saved activations are empty or not of this block (n " + std::to_string(s.n) + ", " +
                        std::to_string(s.x.size()) + " input values for hidden " + std::to_string(H_) +
                        "); call forward with a Saved first");
    detail::require(dy != nullptr, "train block backward", "null dy");
    if (s.full) {
      const int64_t n = s.n;
      auto is = [](const std::vector<T>& v, int64_t size) { return static_cast<int64_t>(v.size()) == size; };
      detail::require(is(s.h1, n * H_) && is(s.q, n * Q_) && is(s.k, n * KV_) && is(s.v, n * KV_) &&
                          is(s.attn, n * Q_) && is(s.x2, n * H_) && is(s.h2, n * H_) && is(s.gate, n * F_) &&
                          is(s.up, n * F_) && is(s.rstd1, n) && is(s.rstd2, n),
                      "train block backward", "saved activations do not match this block's widths for n " +
                                                  std::to_string(n));
      run_backward(s, dy, dx, pool);
      return;
    }
    Saved full;
    std::vector<T> y(s.x.size());
    run_forward(s.x.data(), s.n, y.data(), full, pool);
    run_backward(full, dy, dx, pool);
  }

  /// Sets every gradient to zero.
  void zero_grad() {
    for (Layer& l : layers_) std::fill(l.grad.begin(), l.grad.end(), T(0));
    std::fill(attn_norm_grad_.begin(), attn_norm_grad_.end(), T(0));
    std::fill(ffn_norm_grad_.begin(), ffn_norm_grad_.end(), T(0));
  }

  /// Trainable tensors: "<layer name>.centroids" (S*K*d values, (S, K, d) row-major) for every
  /// codebook layer in the order q, k, v, o, gate, up, down, then the norms with train_norms.
  /// Pointers stay valid for the block's lifetime (moving the block keeps them valid too).
  std::vector<Param> parameters() {
    std::vector<Param> out;
    for (Layer& l : layers_)
      if (l.codebook)
        out.push_back(Param{l.name + ".centroids", l.centroids.data(), l.grad.data(),
                            static_cast<int64_t>(l.centroids.size())});
    if (opt_.train_norms) {
      out.push_back(Param{"input_layernorm.weight", attn_norm_.data(), attn_norm_grad_.data(), H_});
      out.push_back(Param{"post_attention_layernorm.weight", ffn_norm_.data(), ffn_norm_grad_.data(), H_});
    }
    return out;
  }

  /// Number of trainable values.
  int64_t trainable_count() const {
    int64_t n = 0;
    for (const Layer& l : layers_) n += static_cast<int64_t>(l.centroids.size());
    return n + (opt_.train_norms ? 2 * H_ : 0);
  }

  /// Writes the trained codebooks back into `b` (same codes; centroids converted from T to the
  /// tensor's original storage dtype, fp16/bf16 with round-to-nearest-even; T = double is rounded
  /// to fp32 first), and the norms with train_norms. Each codebook Linear is rebuilt with
  /// Linear::from_codebook (same name and bias). Error(kInvalidArgument) when `b`'s layer shapes
  /// differ from the block this was built from.
  void write_back(LlamaBlock& b) const {
    Linear* dst[kLayers] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
    for (int l = 0; l < kLayers; ++l) {
      const Layer& L = layers_[l];
      if (dst[l]->out_features() != L.out || dst[l]->in_features() != L.in)
        throw Error(StatusCode::kInvalidArgument, "train block write_back: layer '" + L.name + "' is (" +
                                                      std::to_string(dst[l]->out_features()) + ", " +
                                                      std::to_string(dst[l]->in_features()) + "), expected (" +
                                                      std::to_string(L.out) + ", " + std::to_string(L.in) + ")");
    }
    for (int l = 0; l < kLayers; ++l) {
      const Layer& L = layers_[l];
      if (!L.codebook) continue;
      *dst[l] = Linear::from_codebook(dst[l]->name(), codebook_tensor(l), dst[l]->bias());
    }
    if (opt_.train_norms) {
      for (int64_t i = 0; i < H_; ++i) {
        b.attn_norm[static_cast<size_t>(i)] = static_cast<float>(attn_norm_[static_cast<size_t>(i)]);
        b.ffn_norm[static_cast<size_t>(i)] = static_cast<float>(ffn_norm_[static_cast<size_t>(i)]);
      }
    }
  }

  /// The codebook tensor of layer `index` (0..6 = q, k, v, o, gate, up, down) with the current
  /// centroids in its storage dtype (RNE) and the original codes. Error for a dense layer.
  CodebookTensor codebook_tensor(int index) const {
    detail::require(index >= 0 && index < kLayers && layers_[index].codebook, "train block codebook_tensor",
                    "layer " + std::to_string(index) + " is not a codebook layer");
    const Layer& L = layers_[index];
    CodebookTensor t(L.shape);
    t.code_words() = L.packed_codes;
    const int64_t K = L.shape.k, d = L.shape.d;
    for (int64_t s = 0; s < L.shape.num_codebooks; ++s)
      for (int64_t c = 0; c < K; ++c)
        for (int64_t e = 0; e < d; ++e)
          t.set_centroid(s, c, static_cast<int>(e),
                         static_cast<float>(L.centroids[static_cast<size_t>((s * K + c) * d + e)]));
    return t;
  }

  /// Memory of Saved for n tokens, in bytes (what forward keeps between forward and backward).
  int64_t saved_bytes(int64_t n) const {
    if (opt_.recompute) return n * H_ * static_cast<int64_t>(sizeof(T));
    return n * (4 * H_ + 2 * Q_ + 2 * KV_ + 2 * F_ + 2) * static_cast<int64_t>(sizeof(T));
  }

  /// Rough upper bound of the transient memory of one backward for n tokens, in bytes (a full Saved
  /// when recomputing, activation gradients and transposes, one layer's decoded Wt and dWt and the
  /// largest codebook's double scatter buffer).
  int64_t backward_workspace_bytes(int64_t n) const {
    int64_t w = 0, cb = 0;
    for (const Layer& l : layers_) {
      w = std::max(w, l.out * l.in);
      cb = std::max(cb, static_cast<int64_t>(l.centroids.size()));
    }
    const int64_t acts = n * (2 * F_ + 3 * H_ + Q_ + 2 * KV_ + std::max(F_, Q_));
    const int64_t full = opt_.recompute ? saved_bytes(n) / static_cast<int64_t>(sizeof(T)) : 0;
    return (acts + 2 * w + full + n * std::max(F_, H_) * 2) * static_cast<int64_t>(sizeof(T)) + cb * 8;
  }

  const TrainBlockOptions& options() const { return opt_; }
  void set_recompute(bool on) { opt_.recompute = on; }

 private:
  static constexpr int kLayers = 7;
  static constexpr const char* kRoleNames[kLayers] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                      "mlp.down_proj"};
  enum : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown };

  struct Layer {
    std::string name;
    int64_t out = 0, in = 0;
    std::vector<T> bias;
    bool codebook = false;
    // dense (frozen)
    std::vector<T> w, wt;  // (out, in), (in, out)
    // codebook
    CodebookShape shape;
    std::vector<uint32_t> packed_codes;
    std::vector<T> centroids, grad;  // (S, K, d)
  };

  void init_layer(Layer& L, const Linear& src, const char* role, int64_t out, int64_t in) {
    L.name = src.name().empty() ? std::string(role) : src.name();
    if (src.out_features() != out || src.in_features() != in || !src.has_weight())
      throw Error(StatusCode::kInvalidArgument,
                  "train block: layer '" + L.name + "' is (" + std::to_string(src.out_features()) + ", " +
                      std::to_string(src.in_features()) + "), expected (" + std::to_string(out) + ", " +
                      std::to_string(in) + ")" + (src.has_weight() ? "" : " and has no weight"));
    L.out = out;
    L.in = in;
    L.bias.assign(src.bias().begin(), src.bias().end());
    if (const CodebookTensor* t = src.codebook()) {
      L.codebook = true;
      L.shape = t->shape();
      L.packed_codes = t->code_words();
      const int64_t nv = L.shape.num_centroid_values();
      L.centroids.resize(static_cast<size_t>(nv));
      for (int64_t s = 0; s < L.shape.num_codebooks; ++s)
        for (int64_t c = 0; c < L.shape.k; ++c)
          for (int e = 0; e < L.shape.d; ++e)
            L.centroids[static_cast<size_t>((s * L.shape.k + c) * L.shape.d + e)] = static_cast<T>(t->centroid(s, c, e));
      L.grad.assign(L.centroids.size(), T(0));
    } else {
      const float* w = src.dense_weight();
      if (!w)
        throw Error(StatusCode::kInvalidArgument, "train block: layer '" + L.name +
                                                      "' is held in its file's stored type; training needs fp32 "
                                                      "(load the model with DenseWeights::kFp32)");
      L.w.assign(w, w + out * in);
      L.wt = transposed(L.w.data(), out, in);
    }
  }

  LookupLinearWeight<T> lookup_weight(const Layer& L) const {
    return LookupLinearWeight<T>{make_codebook_view(L.shape, L.centroids.data(), L.packed_codes.data()),
                                 L.bias.empty() ? nullptr : L.bias.data()};
  }

  DenseLinearWeight<T> dense_weight(const Layer& L) const {
    return DenseLinearWeight<T>{L.w.data(), L.wt.data(), L.bias.empty() ? nullptr : L.bias.data(), L.out, L.in};
  }

  void layer_forward(const Layer& L, const T* x, int64_t n, T* y, ThreadPool* pool) const {
    if (L.codebook)
      lookup_linear_forward(lookup_weight(L), x, n, y, pool);
    else
      dense_linear_forward(dense_weight(L), x, n, y, pool);
  }

  /// dx (+)= dy W; codebook layers also add their centroid gradient. xt: x^T (in, n) or null.
  void layer_backward(Layer& L, const T* x, const T* xt, int64_t n, const T* dy, T* dx, bool accumulate_dx,
                      ThreadPool* pool) {
    if (L.codebook) {
      LookupLinearGrads<T> g;
      g.dx = dx;
      g.accumulate_dx = accumulate_dx;
      g.dcentroids = L.grad.data();
      g.xt = xt;
      lookup_linear_backward(LookupLinearCtx<T>{lookup_weight(L), x, n}, dy, g, pool);
    } else {
      DenseLinearGrads<T> g;
      g.dx = dx;
      g.accumulate_dx = accumulate_dx;
      dense_linear_backward(DenseLinearCtx<T>{dense_weight(L), x, n}, dy, g, pool);
    }
  }

  const RopeTable& rope_table(int64_t n) {
    if (rope_.n != n) rope_ = make_rope_table(inv_freq_, 0, n);
    return rope_;
  }

  AttentionShape attention_shape(int64_t n) const {
    AttentionShape a;
    a.n = n;
    a.heads = heads_;
    a.kv_heads = kv_heads_;
    a.head_dim = hd_;
    a.window = window_;
    a.scale = scale_;
    return a;
  }

  /// The runtime's block body, keeping every activation in s.
  void run_forward(const T* x, int64_t n, T* y, Saved& s, ThreadPool* pool) {
    auto sz = [](int64_t a, int64_t b) { return detail::count(a, b); };
    s.n = n;
    s.full = true;
    s.x.assign(x, x + n * H_);
    s.h1.resize(sz(n, H_));
    s.q.resize(sz(n, Q_));
    s.k.resize(sz(n, KV_));
    s.v.resize(sz(n, KV_));
    s.attn.resize(sz(n, Q_));
    s.x2.resize(sz(n, H_));
    s.h2.resize(sz(n, H_));
    s.gate.resize(sz(n, F_));
    s.up.resize(sz(n, F_));
    s.rstd1 = rms_norm_forward(s.x.data(), attn_norm_.data(), eps_, n, H_, s.h1.data(), pool).rstd;
    layer_forward(layers_[kQ], s.h1.data(), n, s.q.data(), pool);
    layer_forward(layers_[kK], s.h1.data(), n, s.k.data(), pool);
    layer_forward(layers_[kV], s.h1.data(), n, s.v.data(), pool);
    const RopeTable& rope = rope_table(n);
    rope_forward(s.q.data(), Q_, heads_, rope);
    rope_forward(s.k.data(), KV_, kv_heads_, rope);
    attention_forward(attention_shape(n), s.q.data(), s.k.data(), s.v.data(), s.attn.data(), pool);
    layer_forward(layers_[kO], s.attn.data(), n, s.x2.data(), pool);  // o(attn), then + x below
    residual_add_forward(s.x.data(), s.x2.data(), s.x2.data(), n * H_);
    s.rstd2 = rms_norm_forward(s.x2.data(), ffn_norm_.data(), eps_, n, H_, s.h2.data(), pool).rstd;
    layer_forward(layers_[kGate], s.h2.data(), n, s.gate.data(), pool);
    layer_forward(layers_[kUp], s.h2.data(), n, s.up.data(), pool);
    std::vector<T> act(sz(n, F_)), tmp(sz(n, H_));
    swiglu_forward(s.gate.data(), s.up.data(), act.data(), n * F_, pool);
    layer_forward(layers_[kDown], act.data(), n, tmp.data(), pool);
    residual_add_forward(s.x2.data(), tmp.data(), y, n * H_);
  }

  /// x^T (in, n) of a layer input shared by several layers, for the double backward (the float
  /// one reads x in place and gets an empty vector).
  std::vector<T> input_transpose(const T* x, int64_t n, ThreadPool* pool) const {
    if constexpr (std::is_same_v<T, float>) {
      (void)x;
      (void)n;
      (void)pool;
      return {};
    } else {
      return transposed(x, n, H_, pool);
    }
  }

  void run_backward(const Saved& s, const T* dy, T* dx, ThreadPool* pool) {
    const int64_t n = s.n;
    auto sz = [](int64_t a, int64_t b) { return detail::count(a, b); };
    // MLP branch: y = x2 + down(swiglu(gate, up)).
    std::vector<T> dx2(dy, dy + n * H_);  // residual
    {
      std::vector<T> act(sz(n, F_)), dact(sz(n, F_));
      swiglu_forward(s.gate.data(), s.up.data(), act.data(), n * F_, pool);
      layer_backward(layers_[kDown], act.data(), nullptr, n, dy, dact.data(), false, pool);
      std::vector<T>& dgate = act;  // act is no longer needed
      std::vector<T> dup(sz(n, F_));
      swiglu_backward(s.gate.data(), s.up.data(), dact.data(), dgate.data(), dup.data(), n * F_, pool);
      dact.clear();
      dact.shrink_to_fit();
      const std::vector<T> h2t = input_transpose(s.h2.data(), n, pool);
      std::vector<T> dh2(sz(n, H_));
      layer_backward(layers_[kGate], s.h2.data(), h2t.data(), n, dgate.data(), dh2.data(), false, pool);
      layer_backward(layers_[kUp], s.h2.data(), h2t.data(), n, dup.data(), dh2.data(), true, pool);
      RmsNormCtx<T> norm2{s.x2.data(), ffn_norm_.data(), n, H_, s.rstd2};
      rms_norm_backward(norm2, dh2.data(), dx2.data(), true, opt_.train_norms ? ffn_norm_grad_.data() : nullptr, pool);
    }
    // Attention branch: x2 = x + o(attention(rope(q(h1)), rope(k(h1)), v(h1))).
    const bool need_dh1 = dx != nullptr || opt_.train_norms;
    std::vector<T> dh1(need_dh1 ? sz(n, H_) : 0);
    {
      std::vector<T> dattn(sz(n, Q_));
      layer_backward(layers_[kO], s.attn.data(), nullptr, n, dx2.data(), dattn.data(), false, pool);
      std::vector<T> dq(sz(n, Q_)), dk(sz(n, KV_)), dv(sz(n, KV_));
      attention_backward(AttentionCtx<T>{attention_shape(n), s.q.data(), s.k.data(), s.v.data()}, dattn.data(),
                         dq.data(), dk.data(), dv.data(), pool);
      const RopeTable& rope = rope_table(n);
      rope_backward(dq.data(), Q_, heads_, rope);
      rope_backward(dk.data(), KV_, kv_heads_, rope);
      const std::vector<T> h1t = input_transpose(s.h1.data(), n, pool);
      // dh1 feeds only the first norm's backward: skipped when neither dx nor its weight's
      // gradient is wanted (block-wise calibration), as autograd frameworks skip it.
      T* dh1p = need_dh1 ? dh1.data() : nullptr;
      layer_backward(layers_[kQ], s.h1.data(), h1t.data(), n, dq.data(), dh1p, false, pool);
      layer_backward(layers_[kK], s.h1.data(), h1t.data(), n, dk.data(), dh1p, true, pool);
      layer_backward(layers_[kV], s.h1.data(), h1t.data(), n, dv.data(), dh1p, true, pool);
    }
    RmsNormCtx<T> norm1{s.x.data(), attn_norm_.data(), n, H_, s.rstd1};
    if (dx) {
      std::copy(dx2.begin(), dx2.end(), dx);
      rms_norm_backward(norm1, dh1.data(), dx, true, opt_.train_norms ? attn_norm_grad_.data() : nullptr, pool);
    } else if (opt_.train_norms) {
      rms_norm_backward(norm1, dh1.data(), static_cast<T*>(nullptr), false, attn_norm_grad_.data(), pool);
    }
  }

  TrainBlockOptions opt_;
  int64_t H_ = 0, F_ = 0, heads_ = 0, kv_heads_ = 0, hd_ = 0, Q_ = 0, KV_ = 0, window_ = 0;
  float eps_ = 0.0f, scale_ = 0.0f;
  std::vector<double> inv_freq_;
  RopeTable rope_;
  std::vector<T> attn_norm_, ffn_norm_, attn_norm_grad_, ffn_norm_grad_;
  Layer layers_[kLayers];
};

/// The fp32 trainable block the calibration loop uses.
using TrainBlock = BasicTrainBlock<float>;

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
