#pragma once
/// LLaMA-family decoder on the CPU (llama, mistral, qwen2; SmolLM and Llama 2/3 are "llama"):
/// token embedding, N blocks of [RMSNorm -> q/k/v (+ Qwen2-style biases) -> RoPE -> causal GQA
/// over a KV cache -> o] and [RMSNorm -> gate/up -> SwiGLU -> down] with residuals, final
/// RMSNorm, lm_head (tied to the embedding or separate).
///
/// Loading: from GGUF (any tensor type gguf_quant.hpp dequantises; llama.cpp's q/k row
/// permutation undone for llama/mistral files) or from an HF directory (config.json +
/// model.safetensors or a sharded model.safetensors.index.json; fp32/fp16/bf16). Weights are held
/// as fp32 (DenseWeights::kFp32, the default: what training and calibration read), or, with
/// DenseWeights::kStored, the embedding, lm_head and every dense projection stay in the type the
/// file stores them in (fp16, bf16, Q8_0, Q4_1, ...; fp32 tensors stay fp32) and are multiplied
/// by ops/stored_matmul.hpp: the weights in memory are then about the file's size. Missing or mis-shaped tensors, unknown architectures, prompts that do not fit the
/// context: Error naming the file, the tensor or the sizes.
///
/// Numerics: fp32 activations and accumulation (ops/*.hpp). Every row of every op is computed by
/// the same operations whether it arrives in a batch or alone, so a batched prefill and a
/// token-by-token decode give bit-identical logits, and results never depend on the thread count.
/// Against an fp64 implementation of the same weights: logits within ~1e-4 relative (see
/// tests/model/test_llama_real.cpp for the measured figure).
///
/// Threads: the model owns a ThreadPool (LlamaRuntimeOptions::threads). One forward at a time per
/// model object: forward calls are not thread-safe.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/model_source.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/model/linear.hpp"
#include "cluscomp/ops/attention.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/rmsnorm.hpp"
#include "cluscomp/ops/rope.hpp"
#include "cluscomp/ops/swiglu.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// How the runtime holds dense weights (embedding, lm_head, projections that are not codebooks).
enum class DenseWeights {
  kFp32,    // dequantised / widened to fp32 (LlamaWeights::embed, Linear::dense)
  kStored,  // in the file's type (LlamaWeights::embed_stored, Linear::stored); fp32 tensors as kFp32
};

/// Runtime settings of a loaded model.
struct LlamaRuntimeOptions {
  int threads = 0;  // worker threads including the caller; 0 = hardware concurrency
  /// Where the work runs. Only kCpu has a backend today; any other device is an Error
  /// (backend_status, host/device_status.hpp) before any work, never a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
  /// kStored keeps dense weights in their file's type (issue 23: a decoded token then reads the
  /// file's bytes, not an fp32 copy four times their size). kFp32 is the default because the
  /// calibration and training pipelines read LlamaWeights::embed and dense_weight() as fp32.
  DenseWeights dense = DenseWeights::kFp32;
};

/// Keys and values of every block for positions [0, length()), fp32, (capacity, kv_dim) per block.
class KvCache {
 public:
  KvCache() = default;
  KvCache(int64_t layers, int64_t capacity, int64_t kv_dim)
      : layers_(layers), capacity_(capacity), kv_dim_(kv_dim) {
    if (layers <= 0 || capacity <= 0 || kv_dim <= 0)
      throw Error(StatusCode::kInvalidArgument, "kv cache: layers, capacity and kv_dim must be positive");
    const uint64_t per = checked_mul(static_cast<uint64_t>(capacity), static_cast<uint64_t>(kv_dim), "kv cache");
    keys_.resize(static_cast<size_t>(layers));
    values_.resize(static_cast<size_t>(layers));
    for (int64_t l = 0; l < layers; ++l) {
      keys_[static_cast<size_t>(l)].assign(static_cast<size_t>(per), 0.0f);
      values_[static_cast<size_t>(l)].assign(static_cast<size_t>(per), 0.0f);
    }
  }
  int64_t layers() const { return layers_; }
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  /// Positions filled so far (the next token goes to position length()).
  int64_t length() const { return length_; }
  /// Forgets everything (keeps the memory).
  void clear() { length_ = 0; }
  /// Keeps only the first n positions (n <= length()).
  void truncate(int64_t n) {
    if (n < 0 || n > length_)
      throw Error(StatusCode::kOutOfRange, "kv cache: cannot truncate " + std::to_string(length_) +
                                               " positions to " + std::to_string(n));
    length_ = n;
  }
  float* keys(int64_t layer) { return keys_[static_cast<size_t>(layer)].data(); }
  float* values(int64_t layer) { return values_[static_cast<size_t>(layer)].data(); }
  /// Bytes held (keys and values of every block at full capacity).
  int64_t memory_bytes() const { return 2 * layers_ * capacity_ * kv_dim_ * 4; }
  /// Used by the model after a successful forward.
  void advance(int64_t n) { length_ += n; }

 private:
  int64_t layers_ = 0, capacity_ = 0, kv_dim_ = 0, length_ = 0;
  std::vector<std::vector<float>> keys_, values_;
};

/// One decoder block's weights (HF names in comments).
struct LlamaBlock {
  std::vector<float> attn_norm;  // input_layernorm (hidden)
  std::vector<float> ffn_norm;   // post_attention_layernorm (hidden)
  Linear q, k, v, o;             // self_attn.{q,k,v,o}_proj
  Linear gate, up, down;         // mlp.{gate,up,down}_proj
};

/// Every weight of a model. The embedding is `embed` (fp32) or `embed_stored` (a stored type),
/// exactly one of them; `lm_head` shares it when the embeddings are tied.
struct LlamaWeights {
  std::shared_ptr<const std::vector<float>> embed;     // (vocab, hidden) fp32, or null
  std::shared_ptr<const StoredMatrix> embed_stored;    // (vocab, hidden) in the file's type, or null

  /// The fp32 embedding, for the code that reads it as fp32 (calibration, training, activation
  /// statistics). Error(kInvalidArgument) naming `who` when the model holds it in a stored type.
  const std::vector<float>& embed_fp32(const std::string& who) const {
    if (!embed)
      throw Error(StatusCode::kInvalidArgument,
                  who + " needs the fp32 embedding: load the model with DenseWeights::kFp32 (it is held stored)");
    return *embed;
  }
  std::vector<float> final_norm;                    // (hidden)
  Linear lm_head;                                   // (vocab, hidden)
  std::vector<LlamaBlock> blocks;
};

/// Memory of a model in use, in bytes.
struct MemoryReport {
  int64_t weights = 0;      // every weight once (a tied lm_head is not counted twice)
  int64_t kv_cache = 0;     // the cache passed in (0 without one)
  int64_t activations = 0;  // peak scratch of one forward over the given number of tokens
  int64_t total() const { return weights + kv_cache + activations; }
};

/// Reads a tensor by its HF name into `out` (row-major, HF shape). Returns false when the source
/// has no such tensor; throws Error(kFormatError) naming it when its shape differs from `shape`.
using LlamaTensorFetch =
    std::function<bool(const std::string& hf_name, const std::vector<int64_t>& shape, std::vector<float>* out)>;

namespace model_detail {

inline RopeParams rope_params_of(const LlamaConfig& c) {
  RopeParams p;
  p.head_dim = c.head_dim;
  p.theta = c.rope_theta;
  if (c.rope_scaling.type == "linear") {
    p.scaling = RopeScalingType::kLinear;
  } else if (c.rope_scaling.type == "llama3") {
    p.scaling = RopeScalingType::kLlama3;
  } else if (!c.rope_scaling.type.empty()) {
    throw Error(StatusCode::kUnsupported, "rope scaling '" + c.rope_scaling.type + "'");
  }
  p.factor = c.rope_scaling.factor;
  p.low_freq_factor = c.rope_scaling.low_freq_factor;
  p.high_freq_factor = c.rope_scaling.high_freq_factor;
  p.original_context = static_cast<double>(c.rope_scaling.original_max_position_embeddings);
  return p;
}

inline void require_size(const std::vector<float>& v, int64_t n, const std::string& what) {
  if (static_cast<int64_t>(v.size()) != n)
    throw Error(StatusCode::kInvalidArgument, what + " has " + std::to_string(v.size()) +
                                                  " values, expected " + std::to_string(n));
}

inline void require_linear(const Linear& l, int64_t out, int64_t in, const std::string& what) {
  if (l.out_features() != out || l.in_features() != in || !l.has_weight())
    throw Error(StatusCode::kInvalidArgument,
                what + " is (" + std::to_string(l.out_features()) + ", " + std::to_string(l.in_features()) +
                    "), expected (" + std::to_string(out) + ", " + std::to_string(in) + ")");
}

}  // namespace model_detail

/// Supplies a 2-D weight in its stored type (DenseWeights::kStored): given its HF name and
/// expected shape, returns false to fall back to LlamaTensorFetch (missing, or a type kept as fp32)
/// or sets `out`. Errors as LlamaTensorFetch.
using LlamaStoredFetch = std::function<bool(const std::string& hf_name, const std::vector<int64_t>& shape,
                                            std::shared_ptr<const StoredMatrix>* out)>;

/// Supplies a projection as a ready Linear (e.g. a codebook layer) given its HF prefix
/// ("model.layers.0.self_attn.q_proj"), expected (out, in) and bias; returns false to fall back to
/// LlamaTensorFetch of "<prefix>.weight".
using LlamaLinearSource =
    std::function<bool(const std::string& prefix, int64_t out, int64_t in, std::vector<float> bias, Linear* out_layer)>;

/// Builds the weights of `c` through `fetch` (HF names), projections through `linear_source` first
/// when given, the embedding, lm_head and other projection weights through `stored` first when
/// given. Missing required tensors: Error(kNotFound) naming `source` and the tensor. Biases are
/// loaded wherever the source has them.
inline LlamaWeights build_llama_weights(const LlamaConfig& c, const LlamaTensorFetch& fetch,
                                        const std::string& source, const LlamaLinearSource& linear_source = {},
                                        const LlamaStoredFetch& stored = {}) {
  auto need = [&](const std::string& name, std::vector<int64_t> shape) {
    std::vector<float> v;
    if (!fetch(name, shape, &v))
      throw Error(StatusCode::kNotFound, source + ": missing tensor '" + name + "'");
    return v;
  };
  auto optional = [&](const std::string& name, std::vector<int64_t> shape) {
    std::vector<float> v;
    if (!fetch(name, shape, &v)) v.clear();
    return v;
  };
  auto linear = [&](const std::string& prefix, int64_t out, int64_t in) {
    std::vector<float> b = optional(prefix + ".bias", {out});
    Linear l;
    if (linear_source && linear_source(prefix, out, in, b, &l)) return l;
    std::shared_ptr<const StoredMatrix> sm;
    if (stored && stored(prefix + ".weight", {out, in}, &sm)) return Linear::stored(prefix, std::move(sm), std::move(b));
    std::vector<float> w = need(prefix + ".weight", {out, in});
    return Linear::dense(prefix, out, in, std::move(w), std::move(b));
  };
  const int64_t H = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  LlamaWeights w;
  if (!(stored && stored("model.embed_tokens.weight", {c.vocab_size, H}, &w.embed_stored)))
    w.embed = std::make_shared<const std::vector<float>>(need("model.embed_tokens.weight", {c.vocab_size, H}));
  w.final_norm = need("model.norm.weight", {H});
  std::shared_ptr<const StoredMatrix> head;
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed_stored ? Linear::stored("lm_head", w.embed_stored) : Linear::dense("lm_head", c.vocab_size, H, w.embed);
  } else if (stored && stored("lm_head.weight", {c.vocab_size, H}, &head)) {
    w.lm_head = Linear::stored("lm_head", std::move(head));
  } else {
    w.lm_head = Linear::dense("lm_head", c.vocab_size, H, need("lm_head.weight", {c.vocab_size, H}));
  }
  w.blocks.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LlamaBlock& b = w.blocks[static_cast<size_t>(i)];
    b.attn_norm = need(p + "input_layernorm.weight", {H});
    b.ffn_norm = need(p + "post_attention_layernorm.weight", {H});
    b.q = linear(p + "self_attn.q_proj", Q, H);
    b.k = linear(p + "self_attn.k_proj", KV, H);
    b.v = linear(p + "self_attn.v_proj", KV, H);
    b.o = linear(p + "self_attn.o_proj", H, Q);
    b.gate = linear(p + "mlp.gate_proj", F, H);
    b.up = linear(p + "mlp.up_proj", F, H);
    b.down = linear(p + "mlp.down_proj", H, F);
  }
  return w;
}

class LlamaModel {
 public:
  /// Validates the weights against `config` (Error(kInvalidArgument) naming the bad tensor).
  LlamaModel(LlamaConfig config, LlamaWeights weights, const LlamaRuntimeOptions& opt = {})
      : config_(std::move(config)), w_(std::move(weights)) {
    throw_if_error(backend_status(opt.device, "the LLaMA runtime"));
    throw_if_error(config_.validate());
    const LlamaConfig& c = config_;
    using model_detail::require_linear;
    using model_detail::require_size;
    if (!w_.embed == !w_.embed_stored)
      throw Error(StatusCode::kInvalidArgument, "model: the embedding must be given either as fp32 or stored, not " +
                                                    std::string(w_.embed ? "both" : "neither"));
    if (w_.embed) {
      require_size(*w_.embed, c.vocab_size * c.hidden_size, "model.embed_tokens.weight");
    } else if (w_.embed_stored->rows() != c.vocab_size || w_.embed_stored->cols() != c.hidden_size) {
      throw Error(StatusCode::kInvalidArgument, "model.embed_tokens.weight is (" +
                                                    std::to_string(w_.embed_stored->rows()) + ", " +
                                                    std::to_string(w_.embed_stored->cols()) + "), expected (" +
                                                    std::to_string(c.vocab_size) + ", " +
                                                    std::to_string(c.hidden_size) + ")");
    }
    require_size(w_.final_norm, c.hidden_size, "model.norm.weight");
    require_linear(w_.lm_head, c.vocab_size, c.hidden_size, "lm_head.weight");
    if (static_cast<int64_t>(w_.blocks.size()) != c.num_hidden_layers)
      throw Error(StatusCode::kInvalidArgument, "model: " + std::to_string(w_.blocks.size()) +
                                                    " blocks, config says " + std::to_string(c.num_hidden_layers));
    for (size_t i = 0; i < w_.blocks.size(); ++i) {
      const LlamaBlock& b = w_.blocks[i];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      require_size(b.attn_norm, c.hidden_size, p + "input_layernorm.weight");
      require_size(b.ffn_norm, c.hidden_size, p + "post_attention_layernorm.weight");
      require_linear(b.q, c.q_dim(), c.hidden_size, p + "self_attn.q_proj");
      require_linear(b.k, c.kv_dim(), c.hidden_size, p + "self_attn.k_proj");
      require_linear(b.v, c.kv_dim(), c.hidden_size, p + "self_attn.v_proj");
      require_linear(b.o, c.hidden_size, c.q_dim(), p + "self_attn.o_proj");
      require_linear(b.gate, c.intermediate_size, c.hidden_size, p + "mlp.gate_proj");
      require_linear(b.up, c.intermediate_size, c.hidden_size, p + "mlp.up_proj");
      require_linear(b.down, c.hidden_size, c.intermediate_size, p + "mlp.down_proj");
    }
    inv_freq_ = rope_inverse_frequencies(model_detail::rope_params_of(c));
    pool_ = std::make_unique<ThreadPool>(opt.threads);
  }

  LlamaModel(LlamaModel&&) = default;
  LlamaModel& operator=(LlamaModel&&) = default;

  const LlamaConfig& config() const { return config_; }
  const LlamaWeights& weights() const { return w_; }
  int64_t vocab_size() const { return config_.vocab_size; }
  /// The context length (max_position_embeddings).
  int64_t context_length() const { return config_.max_position_embeddings; }
  /// Threads that take part in a forward.
  int threads() const { return pool_->size(); }

  /// A cache for `capacity` positions (0: the model's context). Error(kInvalidArgument) when
  /// capacity exceeds the context.
  KvCache make_cache(int64_t capacity = 0) const {
    if (capacity == 0) capacity = context_length();
    if (capacity < 0 || capacity > context_length())
      throw Error(StatusCode::kInvalidArgument, "kv cache of " + std::to_string(capacity) +
                                                    " positions exceeds the model's context of " +
                                                    std::to_string(context_length()) + " tokens");
    return KvCache(config_.num_hidden_layers, capacity, config_.kv_dim());
  }

  /// Runs `n` tokens at positions cache.length() .. + n - 1 through every block, appending their
  /// keys/values to `cache`, and writes the final-norm hidden states (n, hidden) to `hidden`.
  /// Errors (nothing is appended then): a token id outside the vocabulary, n < 1, or a cache
  /// that cannot hold n more positions ("prompt longer than the context"). Numerics: see the
  /// file comment; bit-identical however the tokens are split into calls; deterministic.
  void forward_hidden(const int32_t* ids, int64_t n, KvCache& cache, float* hidden) {
    const LlamaConfig& c = config_;
    if (n < 1 || !ids || !hidden) throw Error(StatusCode::kInvalidArgument, "forward: no tokens");
    if (cache.layers() != c.num_hidden_layers || cache.kv_dim() != c.kv_dim())
      throw Error(StatusCode::kInvalidArgument, "forward: the kv cache was made for another model");
    const int64_t pos0 = cache.length();
    if (pos0 + n > cache.capacity())
      throw Error(StatusCode::kOutOfRange,
                  "forward: " + std::to_string(n) + " tokens after " + std::to_string(pos0) +
                      " cached ones do not fit the context of " + std::to_string(cache.capacity()) +
                      " tokens" + (cache.capacity() == context_length() ? "" : " (kv cache capacity)"));
    for (int64_t t = 0; t < n; ++t)
      if (ids[t] < 0 || ids[t] >= c.vocab_size)
        throw Error(StatusCode::kOutOfRange, "forward: token id " + std::to_string(ids[t]) + " at position " +
                                                 std::to_string(t) + " is outside the vocabulary of " +
                                                 std::to_string(c.vocab_size));
    const int64_t H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size;
    const float eps = static_cast<float>(c.rms_norm_eps);
    ThreadPool* pool = pool_.get();
    auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
    std::vector<float> x(sz(n, H)), h(sz(n, H)), q(sz(n, Q)), attn(sz(n, Q)), tmp(sz(n, H));
    std::vector<float> gate(sz(n, F)), up(sz(n, F));
    for (int64_t t = 0; t < n; ++t) {
      if (w_.embed)
        std::copy(w_.embed->data() + ids[t] * H, w_.embed->data() + (ids[t] + 1) * H, x.data() + t * H);
      else  // only the rows of these tokens are decoded (exactly: equal to the fp32 embedding's rows)
        throw_if_error(decode_stored_rows(w_.embed_stored->view(), ids[t], 1, x.data() + t * H, H));
    }
    const RopeTable rope = make_rope_table(inv_freq_, pos0, n);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const LlamaBlock& b = w_.blocks[static_cast<size_t>(l)];
      float* kc = cache.keys(l);
      float* vc = cache.values(l);
      throw_if_error(rms_norm(x.data(), H, b.attn_norm.data(), eps, n, H, h.data(), H, pool));
      throw_if_error(b.q.forward(h.data(), H, n, q.data(), Q, pool));
      throw_if_error(b.k.forward(h.data(), H, n, kc + pos0 * KV, KV, pool));
      throw_if_error(b.v.forward(h.data(), H, n, vc + pos0 * KV, KV, pool));
      throw_if_error(apply_rope(q.data(), Q, c.num_attention_heads, rope));
      throw_if_error(apply_rope(kc + pos0 * KV, KV, c.num_key_value_heads, rope));
      AttentionArgs a;
      a.q = q.data();
      a.ldq = Q;
      a.k = kc;
      a.v = vc;
      a.ldkv = KV;
      a.out = attn.data();
      a.ldo = Q;
      a.n = n;
      a.pos0 = pos0;
      a.heads = c.num_attention_heads;
      a.kv_heads = c.num_key_value_heads;
      a.head_dim = c.head_dim;
      a.window = c.sliding_window;
      a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
      throw_if_error(causal_attention(a, pool));
      throw_if_error(b.o.forward(attn.data(), Q, n, tmp.data(), H, pool));
      for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
      throw_if_error(rms_norm(x.data(), H, b.ffn_norm.data(), eps, n, H, h.data(), H, pool));
      throw_if_error(b.gate.forward(h.data(), H, n, gate.data(), F, pool));
      throw_if_error(b.up.forward(h.data(), H, n, up.data(), F, pool));
      const int64_t rows_per_task = 16;
      parallel_for(n * F >= (int64_t{1} << 15) ? pool : nullptr, (n + rows_per_task - 1) / rows_per_task,
                   [&](int64_t t) {
                     const int64_t r0 = t * rows_per_task, r1 = std::min(n, r0 + rows_per_task);
                     swiglu(gate.data() + r0 * F, up.data() + r0 * F, gate.data() + r0 * F, (r1 - r0) * F);
                   });
      throw_if_error(b.down.forward(gate.data(), F, n, tmp.data(), H, pool));
      for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    }
    throw_if_error(rms_norm(x.data(), H, w_.final_norm.data(), eps, n, H, hidden, H, pool));
    cache.advance(n);
  }

  /// logits (rows, vocab) = hidden (rows, hidden) lm_head^T. fp32 accumulation; deterministic.
  void logits(const float* hidden, int64_t rows, float* out) const {
    throw_if_error(w_.lm_head.forward(hidden, config_.hidden_size, rows, out, config_.vocab_size, pool_.get()));
  }

  /// forward_hidden + logits: the logits of the last token (vocab values), or of every token
  /// ((n, vocab) row-major) when `all` is true.
  std::vector<float> forward(const int32_t* ids, int64_t n, KvCache& cache, bool all = false) {
    std::vector<float> hidden(static_cast<size_t>(n * config_.hidden_size));
    forward_hidden(ids, n, cache, hidden.data());
    const int64_t rows = all ? n : 1;
    std::vector<float> out(static_cast<size_t>(rows * config_.vocab_size));
    logits(hidden.data() + (n - rows) * config_.hidden_size, rows, out.data());
    return out;
  }
  std::vector<float> forward(const std::vector<int32_t>& ids, KvCache& cache, bool all = false) {
    return forward(ids.data(), static_cast<int64_t>(ids.size()), cache, all);
  }

  /// Weights, the cache (if given) and the peak scratch of a forward over `tokens` tokens
  /// (without the logits the caller allocates).
  MemoryReport memory_report(const KvCache* cache = nullptr, int64_t tokens = 1) const {
    const LlamaConfig& c = config_;
    MemoryReport r;
    r.weights = static_cast<int64_t>((w_.embed ? w_.embed->size() : 0) + w_.final_norm.size()) * 4 +
                (w_.embed_stored ? w_.embed_stored->bytes() : 0);
    if (!w_.lm_head.shares_weight_with(w_.embed.get()) && !w_.lm_head.shares_weight_with(w_.embed_stored.get()))
      r.weights += w_.lm_head.memory_bytes();
    for (const LlamaBlock& b : w_.blocks) {
      r.weights += static_cast<int64_t>(b.attn_norm.size() + b.ffn_norm.size()) * 4;
      for (const Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) r.weights += l->memory_bytes();
    }
    r.kv_cache = cache ? cache->memory_bytes() : 0;
    const int64_t per_token = 3 * c.hidden_size + 2 * c.q_dim() + 2 * c.intermediate_size;
    const int64_t keys = cache ? cache->capacity() : tokens;
    r.activations = 4 * (tokens * per_token + threads() * ops_detail::kAttentionQueryBlock * keys);
    return r;
  }

 private:
  LlamaConfig config_;
  LlamaWeights w_;
  std::vector<double> inv_freq_;
  std::unique_ptr<ThreadPool> pool_;
};

namespace model_detail {

/// A (rows, cols) tensor in ggml type `type_id` as a StoredMatrix, or null when the runtime keeps
/// it as fp32 (fp32 itself, a type stored_matmul_nt has no decoder for, rows that are not whole
/// blocks).
inline std::shared_ptr<const StoredMatrix> stored_matrix_of(const std::string& name, uint32_t type_id,
                                                            const std::vector<int64_t>& shape,
                                                            std::vector<unsigned char> bytes) {
  StoredType t;
  if (shape.size() != 2 || type_id == 0 || !stored_type_from_id(type_id, &t) || stored_row_bytes(t, shape[1]) < 0)
    return nullptr;
  return std::make_shared<const StoredMatrix>(name, t, shape[0], shape[1], std::move(bytes));
}

}  // namespace model_detail

/// The LlamaStoredFetch of a model source under `opt` (empty unless DenseWeights::kStored).
inline LlamaStoredFetch stored_fetch_of(const ModelSource& src, const LlamaRuntimeOptions& opt) {
  if (opt.dense != DenseWeights::kStored) return {};
  return [&src](const std::string& name, const std::vector<int64_t>& shape, std::shared_ptr<const StoredMatrix>* out) {
    const ModelSource::Entry* e = src.find(name);
    if (!e || shape.size() != 2) return false;
    StoredType t;
    const uint32_t id = src.stored_type_id(*e);
    if (id == 0 || !stored_type_from_id(id, &t) || stored_row_bytes(t, shape[1]) < 0) return false;
    uint32_t type_id = 0;
    std::vector<unsigned char> bytes;
    if (!src.fetch_stored(name, shape, &type_id, &bytes)) return false;
    *out = model_detail::stored_matrix_of(src.name() + ": " + name, type_id, shape, std::move(bytes));
    return *out != nullptr;
  };
}

/// Loads a LLaMA-family model from an open GGUF file: config from metadata
/// (llama_config_from_gguf: unknown architectures are Error(kUnsupported)), every tensor
/// dequantised to fp32 (bit-identical to ggml), q/k rows of llama/mistral files restored to HF
/// order. Missing tensors: kNotFound; shapes that disagree with the config: kFormatError.
inline LlamaModel load_llama_gguf(const GgufReader& g, const LlamaRuntimeOptions& opt = {}) {
  throw_if_error(backend_status(opt.device, "the LLaMA runtime"));  // before reading any file
  const ModelSource src = ModelSource::open_gguf(g);
  LlamaTensorFetch fetch = [&](const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) {
    return src.fetch(name, shape, out);
  };
  return LlamaModel(src.config(), build_llama_weights(src.config(), fetch, src.name(), {}, stored_fetch_of(src, opt)),
                    opt);
}

/// Loads a GGUF file by path (see load_llama_gguf(const GgufReader&)).
inline LlamaModel load_llama_gguf(const std::string& path, const LlamaRuntimeOptions& opt = {}) {
  throw_if_error(backend_status(opt.device, "the LLaMA runtime"));  // before reading any file
  GgufReader g(path);
  return load_llama_gguf(g, opt);
}

/// Loads an HF model directory: config.json plus model.safetensors, or the shards listed by
/// model.safetensors.index.json. Float tensors of any safetensors float dtype are converted to
/// fp32 exactly (fp16/bf16/fp32). Errors: kIoError/kNotFound for missing files, kNotFound for a
/// missing tensor, kFormatError for a shape that disagrees with config.json.
inline LlamaModel load_llama_hf(const std::string& dir, const LlamaRuntimeOptions& opt = {}) {
  throw_if_error(backend_status(opt.device, "the LLaMA runtime"));  // before reading any file
  const ModelSource src = ModelSource::open_hf(dir);
  LlamaTensorFetch fetch = [&](const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) {
    return src.fetch(name, shape, out);
  };
  return LlamaModel(src.config(), build_llama_weights(src.config(), fetch, src.name(), {}, stored_fetch_of(src, opt)),
                    opt);
}

/// Loads a cluscomp-format model (io/cluscomp_format.hpp, as `cluscomp compress` writes it): the
/// config from the "cluscomp.config" metadata, clustered projections as codebook layers
/// (Linear::from_codebook: exact decode), every other tensor dense (fp32/fp16/bf16 converted
/// exactly; RTN-compressed matrices are dense tensors). Clustered matrices are in HF row order.
/// Errors: kFormatError for a file without a stored config, a clustered matrix whose (out, in)
/// disagrees with the config; otherwise as load_llama_hf.
inline LlamaModel load_llama_cluscomp(const std::string& path, const LlamaRuntimeOptions& opt = {}) {
  throw_if_error(backend_status(opt.device, "the LLaMA runtime"));  // before reading any file
  const CluscompModel cm = read_cluscomp_model(path);
  const std::string cfg = cm.config_json();
  if (cfg.empty())
    throw Error(StatusCode::kFormatError, path + ": cluscomp model without a stored config ('" +
                                              std::string(kCluscompConfigKey) + "' metadata)");
  const LlamaConfig c = parse_llama_config(cfg, path + " (" + kCluscompConfigKey + ")");
  LlamaTensorFetch fetch = [&](const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) {
    const TensorRef* t = cm.find_dense(name);
    if (!t) {
      if (cm.clustered.count(name)) {
        int64_t n = 1;
        for (int64_t x : shape) n *= x;
        *out = decode_dense(cm.clustered.at(name), DecodeLayout::kW);
        if (static_cast<int64_t>(out->size()) != n)
          throw Error(StatusCode::kFormatError, path + ": clustered tensor '" + name + "' has the wrong size");
        return true;
      }
      return false;
    }
    if (t->shape != shape)
      throw Error(StatusCode::kFormatError, path + ": tensor '" + name + "' has shape " +
                                                detail::shape_text(t->shape) + ", expected " +
                                                detail::shape_text(shape));
    *out = tensor_to_float(*t);
    return true;
  };
  LlamaLinearSource lin = [&](const std::string& prefix, int64_t out, int64_t in, std::vector<float> bias, Linear* l) {
    auto it = cm.clustered.find(prefix + ".weight");
    if (it == cm.clustered.end()) return false;
    if (it->second.shape().out != out || it->second.shape().in != in)
      throw Error(StatusCode::kFormatError, path + ": clustered matrix '" + it->first + "' is (" +
                                                std::to_string(it->second.shape().out) + ", " +
                                                std::to_string(it->second.shape().in) + "), expected (" +
                                                std::to_string(out) + ", " + std::to_string(in) + ")");
    *l = Linear::from_codebook(prefix, it->second, std::move(bias));
    return true;
  };
  // Dense tensors of a cluscomp file are safetensors F32/F16/BF16 (compress keeps the source's
  // 16-bit types or writes fp32): kStored keeps the 16-bit ones as they are.
  LlamaStoredFetch stored;
  if (opt.dense == DenseWeights::kStored)
    stored = [&](const std::string& name, const std::vector<int64_t>& shape, std::shared_ptr<const StoredMatrix>* out) {
      const TensorRef* t = cm.find_dense(name);
      if (!t || t->shape != shape) return false;  // missing or mis-shaped: the fp32 fetch reports it
      const uint32_t id = t->dtype == DType::kF16 ? 1u : t->dtype == DType::kBF16 ? 30u : 0u;
      if (id == 0) return false;
      *out = model_detail::stored_matrix_of(path + ": " + name, id, shape,
                                            std::vector<unsigned char>(t->data, t->data + t->nbytes));
      return *out != nullptr;
    };
  return LlamaModel(c, build_llama_weights(c, fetch, path, lin, stored), opt);
}

/// Loads a GGUF file, an HF directory, a cluscomp-format file (a .safetensors file whose metadata
/// holds "cluscomp.format_version"), or the directory of another given .safetensors file.
inline LlamaModel load_llama_model(const std::string& path, const LlamaRuntimeOptions& opt = {}) {
  throw_if_error(backend_status(opt.device, "the LLaMA runtime"));  // before reading any file
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error(StatusCode::kNotFound, path + ": no such file or directory");
  if (fs::is_directory(path)) return load_llama_hf(path, opt);
  if (is_gguf_file(path)) return load_llama_gguf(path, opt);
  bool is_cluscomp = false;
  try {
    is_cluscomp = SafetensorsFile::open(path).metadata().count(kCluscompVersionKey) > 0;
  } catch (const Error&) {
    is_cluscomp = false;  // not a safetensors file: fall through to the HF directory
  }
  if (is_cluscomp) return load_llama_cluscomp(path, opt);
  const fs::path parent = fs::path(path).parent_path();
  return load_llama_hf(parent.empty() ? std::string(".") : parent.string(), opt);
}

CLUSCOMP_NAMESPACE_END
