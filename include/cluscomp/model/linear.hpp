#pragma once
/// A linear layer of the runtime: y = x W^T (+ b) with the HF weight W (out, in) held either as a
/// dense fp32 matrix or as a clustered CodebookTensor.
///
/// Clustered weights are, for now, decoded to dense fp32 once when the layer is built
/// (Linear::from_codebook, the ONE place this happens; grep CLUSCOMP_CODEBOOK_DECODED_AT_LOAD).
/// When the lookup GEMV/GEMM kernels exist, from_codebook keeps the codebook and forward calls
/// them instead; callers do not change.
///
/// Numerics: forward is ops::matmul_nt (fp32 accumulation, per-row results independent of the
/// batch size and thread count: deterministic). Decoding is exact (decode_dense).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Where a Linear's weight came from.
enum class LinearKind {
  kDense,     // fp32 dense
  kCodebook,  // a CodebookTensor (currently decoded to dense at load)
};

class Linear {
 public:
  Linear() = default;

  /// A dense layer. `weight` is (out, in) row-major (the HF layout), `bias` empty or (out).
  /// Throws Error(kInvalidArgument) naming `name` when the sizes disagree. The weight is shared,
  /// not copied, between layers built from the same pointer (tied embeddings).
  static Linear dense(std::string name, int64_t out, int64_t in,
                      std::shared_ptr<const std::vector<float>> weight,
                      std::vector<float> bias = {}) {
    if (out <= 0 || in <= 0 || !weight || static_cast<int64_t>(weight->size()) != out * in)
      throw Error(StatusCode::kInvalidArgument,
                  "linear '" + name + "': weight has " + std::to_string(weight ? weight->size() : 0) +
                      " values, expected (" + std::to_string(out) + ", " + std::to_string(in) + ")");
    if (!bias.empty() && static_cast<int64_t>(bias.size()) != out)
      throw Error(StatusCode::kInvalidArgument, "linear '" + name + "': bias has " +
                                                    std::to_string(bias.size()) + " values, expected " +
                                                    std::to_string(out));
    Linear l;
    l.name_ = std::move(name);
    l.out_ = out;
    l.in_ = in;
    l.weight_ = std::move(weight);
    l.bias_ = std::move(bias);
    return l;
  }
  static Linear dense(std::string name, int64_t out, int64_t in, std::vector<float> weight,
                      std::vector<float> bias = {}) {
    return dense(std::move(name), out, in,
                 std::make_shared<const std::vector<float>>(std::move(weight)), std::move(bias));
  }

  /// A clustered layer. Throws Error when the tensor is invalid or the bias size is wrong.
  /// CLUSCOMP_CODEBOOK_DECODED_AT_LOAD: until the lookup kernels land, the codebook is decoded
  /// here to a dense fp32 W (exact); memory reports then count the dense copy.
  static Linear from_codebook(std::string name, const CodebookTensor& t, std::vector<float> bias = {}) {
    throw_if_error(t.shape().validate());
    throw_if_error(t.validate_codes());
    const int64_t out = t.shape().out, in = t.shape().in;
    Linear l = dense(std::move(name), out, in, decode_dense(t, DecodeLayout::kW), std::move(bias));
    l.kind_ = LinearKind::kCodebook;
    l.codebook_bytes_ = t.storage_bytes();
    return l;
  }

  const std::string& name() const { return name_; }
  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  bool has_bias() const { return !bias_.empty(); }
  LinearKind kind() const { return kind_; }
  /// The dense fp32 W (out, in) the forward uses.
  const float* dense_weight() const { return weight_ ? weight_->data() : nullptr; }
  const std::vector<float>& bias() const { return bias_; }
  /// True when this layer shares its weight buffer with `o` (tied embeddings).
  bool shares_weight_with(const std::vector<float>* w) const { return weight_.get() == w; }
  /// Bytes the layer holds in memory (weight + bias); a shared weight is counted by every holder.
  int64_t memory_bytes() const {
    return static_cast<int64_t>((weight_ ? weight_->size() : 0) + bias_.size()) * 4;
  }
  /// Bytes of the codebook form this layer was built from (0 for dense layers).
  int64_t codebook_bytes() const { return codebook_bytes_; }

  /// y (rows, out) = x (rows, in) W^T (+ b); leading dimensions ldx >= in, ldy >= out.
  /// Numerics and determinism: ops::matmul_nt. kInvalidArgument for bad shapes.
  Status forward(const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                 ThreadPool* pool = nullptr) const {
    if (!weight_) return Status(StatusCode::kInvalidArgument, "linear '" + name_ + "' has no weight");
    MatmulArgs a;
    a.x = x;
    a.ldx = ldx;
    a.w = weight_->data();
    a.ldw = in_;
    a.bias = bias_.empty() ? nullptr : bias_.data();
    a.y = y;
    a.ldy = ldy;
    a.m = rows;
    a.n = out_;
    a.k = in_;
    return matmul_nt(a, pool);
  }

 private:
  std::string name_;
  int64_t out_ = 0, in_ = 0;
  std::shared_ptr<const std::vector<float>> weight_;
  std::vector<float> bias_;
  LinearKind kind_ = LinearKind::kDense;
  int64_t codebook_bytes_ = 0;
};

CLUSCOMP_NAMESPACE_END
