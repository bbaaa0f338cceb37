#pragma once
/// A linear layer of the runtime: y = x W^T (+ b) with the HF weight W (out, in) held as a dense
/// fp32 matrix, as a matrix in its file's stored type (fp16, bf16, a ggml block format:
/// ops/stored_matmul.hpp, never widened to an fp32 copy), or as a clustered CodebookTensor.
///
/// Clustered weights stay clustered: Linear::from_codebook keeps the codes and centroids (plus an
/// fp32 copy of the centroids where the kernel cannot read them in place, S*K*d values, and, where
/// the CPU's decode kernels read them, the codes rearranged once into column panels,
/// lookup_pack_code_panels: about one more copy of the codes) and forward runs the lookup
/// GEMV/GEMM (ops/lookup_gemm.hpp); the dense W is never built.
///
/// Numerics: dense layers run ops::matmul_nt, stored layers ops::stored_matmul_nt (on AVX2+FMA
/// CPUs bit-identical to matmul_nt of the dequantised matrix), codebook layers ops::lookup_gemm;
/// all accumulate in fp32 with a per-element order independent of the batch size and thread count, so results
/// are deterministic and a batched prefill row equals the one-token decode of the same input.
/// The two kernels order their sums differently, so a codebook layer and the dense layer of its
/// decoded weight agree exactly only where every partial sum is exact (small integers), and
/// otherwise within fp32 dot-product rounding.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/lookup_gemm.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/stored_matmul.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Where a Linear's weight came from.
enum class LinearKind {
  kDense,     // fp32 dense
  kCodebook,  // a CodebookTensor, multiplied by lookup_gemm (never decoded)
  kStored,    // a StoredMatrix in its file's type, multiplied by stored_matmul_nt
};

/// An owned matrix in a stored type (ops/stored_matmul.hpp): the file's bytes, rows in HF order.
class StoredMatrix {
 public:
  StoredMatrix() = default;
  /// Takes `bytes` as (rows, cols) of `type`. Throws Error naming `name` when the type is not a
  /// stored type, cols is not a multiple of its block, or the byte count disagrees.
  StoredMatrix(const std::string& name, StoredType type, int64_t rows, int64_t cols, std::vector<unsigned char> bytes)
      : type_(type), rows_(rows), cols_(cols), bytes_(std::move(bytes)) {
    StoredMatrixView v = view();
    v.data = bytes_.empty() ? nullptr : bytes_.data();
    Status s = check_stored_matrix(v);
    if (!s.ok()) throw Error(s.code(), name + ": " + s.message());
    const int64_t rb = stored_row_bytes(type, cols);
    if (static_cast<int64_t>(bytes_.size()) != rb * rows)
      throw Error(StatusCode::kInvalidArgument, name + ": " + std::to_string(bytes_.size()) + " bytes, expected " +
                                                    std::to_string(rb * rows) + " for (" + std::to_string(rows) +
                                                    ", " + std::to_string(cols) + ") " + stored_type_info(type).name);
  }
  StoredType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t bytes() const { return static_cast<int64_t>(bytes_.size()); }
  StoredMatrixView view() const { return StoredMatrixView{type_, bytes_.data(), rows_, cols_}; }

 private:
  StoredType type_ = StoredType::kF32;
  int64_t rows_ = 0, cols_ = 0;
  std::vector<unsigned char> bytes_;  // (rows, row bytes)
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
    check_bias(name, bias, out);
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

  /// A clustered layer: keeps the tensor (shared, not copied) and, where the kernel would
  /// otherwise convert centroids per call (bf16; fp16 without AVX2), an exact fp32 copy of them. Throws Error when the tensor
  /// is invalid (shape or a code >= K) or the bias size is wrong.
  static Linear from_codebook(std::string name, std::shared_ptr<const CodebookTensor> t,
                              std::vector<float> bias = {}) {
    if (!t) throw Error(StatusCode::kInvalidArgument, "linear '" + name + "': null codebook tensor");
    throw_if_error(t->shape().validate());
    throw_if_error(t->validate_codes());
    const int64_t out = t->shape().out, in = t->shape().in;
    check_bias(name, bias, out);
    Linear l;
    l.name_ = std::move(name);
    l.out_ = out;
    l.in_ = in;
    l.bias_ = std::move(bias);
    l.kind_ = LinearKind::kCodebook;
    l.codebook_bytes_ = t->storage_bytes();
    // fp16 centroids are read in place on the AVX2 path; other cases want an fp32 copy.
    const DType cd = t->shape().centroid_dtype;
    if (cd != DType::kF32 && !(cd == DType::kF16 && lookup_gemm_uses_avx2())) {
      l.centroids_f32_.resize(static_cast<size_t>(t->shape().num_centroid_values()));
      throw_if_error(lookup_centroids_f32(t->any_view(), l.centroids_f32_.data()));
    }
    // Decode (few-row) products stream the codes panel by panel: rearranged once here.
    if (const int64_t pb = lookup_code_panels_bytes(t->any_view()); pb > 0) {
      l.code_panels_.resize(static_cast<size_t>((pb + 7) / 8));
      throw_if_error(lookup_pack_code_panels(t->any_view(), l.code_panels_.data(), pb));
    }
    l.codebook_ = std::move(t);
    return l;
  }
  static Linear from_codebook(std::string name, CodebookTensor t, std::vector<float> bias = {}) {
    return from_codebook(std::move(name), std::make_shared<const CodebookTensor>(std::move(t)),
                         std::move(bias));
  }

  /// A layer over a matrix in its stored type, shared (not copied) between layers built from the
  /// same pointer (tied embeddings). Throws Error(kInvalidArgument) naming `name` for a null
  /// matrix or a wrong bias size.
  static Linear stored(std::string name, std::shared_ptr<const StoredMatrix> w, std::vector<float> bias = {}) {
    if (!w || w->rows() <= 0) throw Error(StatusCode::kInvalidArgument, "linear '" + name + "': no stored matrix");
    check_bias(name, bias, w->rows());
    Linear l;
    l.name_ = std::move(name);
    l.out_ = w->rows();
    l.in_ = w->cols();
    l.bias_ = std::move(bias);
    l.kind_ = LinearKind::kStored;
    l.stored_ = std::move(w);
    return l;
  }

  const std::string& name() const { return name_; }
  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  bool has_bias() const { return !bias_.empty(); }
  LinearKind kind() const { return kind_; }
  /// The dense fp32 W (out, in) of a dense layer; null for codebook layers (never decoded).
  const float* dense_weight() const { return weight_ ? weight_->data() : nullptr; }
  /// The clustered W of a codebook layer; null for other layers.
  const CodebookTensor* codebook() const { return codebook_.get(); }
  /// The W of a stored layer; null for other layers.
  const StoredMatrix* stored_weight() const { return stored_.get(); }
  /// True when the layer holds a weight in any form.
  bool has_weight() const { return weight_ != nullptr || codebook_ != nullptr || stored_ != nullptr; }
  const std::vector<float>& bias() const { return bias_; }
  /// True when this layer shares its weight buffer with `o` (tied embeddings).
  bool shares_weight_with(const std::vector<float>* w) const { return w && weight_.get() == w; }
  bool shares_weight_with(const StoredMatrix* w) const { return w && stored_.get() == w; }
  /// Bytes the layer holds in memory (dense weight, stored bytes, or codes + centroids + their
  /// fp32 copy + the code panels, and the bias); a shared weight is counted by every holder.
  int64_t memory_bytes() const {
    return static_cast<int64_t>((weight_ ? weight_->size() : 0) + centroids_f32_.size() + bias_.size()) * 4 +
           (stored_ ? stored_->bytes() : 0) +
           static_cast<int64_t>(code_panels_.size()) * 8 + (codebook_ ? codebook_->storage_bytes() : 0);
  }
  /// Bytes of the codebook form this layer was built from (0 for dense layers).
  int64_t codebook_bytes() const { return codebook_bytes_; }

  /// y (rows, out) = x (rows, in) W^T (+ b); leading dimensions ldx >= in, ldy >= out.
  /// Numerics and determinism: ops::matmul_nt (dense), ops::stored_matmul_nt (stored) or
  /// ops::lookup_gemm (codebook).
  /// kInvalidArgument for bad shapes.
  Status forward(const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                 ThreadPool* pool = nullptr) const {
    if (codebook_) {
      LookupGemmArgs a;
      a.w = codebook_->any_view();
      a.centroids_f32 = centroids_f32_.empty() ? nullptr : centroids_f32_.data();
      a.code_panels = code_panels_.empty() ? nullptr : code_panels_.data();
      a.x = x;
      a.ldx = ldx;
      a.bias = bias_.empty() ? nullptr : bias_.data();
      a.y = y;
      a.ldy = ldy;
      a.m = rows;
      return lookup_gemm(a, pool);
    }
    if (stored_) {
      StoredMatmulArgs a;
      a.x = x;
      a.ldx = ldx;
      a.w = stored_->view();
      a.bias = bias_.empty() ? nullptr : bias_.data();
      a.y = y;
      a.ldy = ldy;
      a.m = rows;
      return stored_matmul_nt(a, pool);
    }
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
  /// A bias must be empty or hold one value per output.
  static void check_bias(const std::string& name, const std::vector<float>& bias, int64_t out) {
    if (!bias.empty() && static_cast<int64_t>(bias.size()) != out)
      throw Error(StatusCode::kInvalidArgument, "linear '" + name + "': bias has " +
                                                    std::to_string(bias.size()) + " values, expected " +
                                                    std::to_string(out));
  }

  std::string name_;
  int64_t out_ = 0, in_ = 0;
  std::shared_ptr<const std::vector<float>> weight_;      // dense layers: (out, in)
  std::shared_ptr<const CodebookTensor> codebook_;         // codebook layers
  std::shared_ptr<const StoredMatrix> stored_;             // stored layers: (out, in) in the file's type
  std::vector<float> centroids_f32_;                        // (S, K, d) fp32 copy for fp16/bf16 centroids
  std::vector<uint64_t> code_panels_;                       // lookup_pack_code_panels bytes, or empty
  std::vector<float> bias_;
  LinearKind kind_ = LinearKind::kDense;
  int64_t codebook_bytes_ = 0;
};

CLUSCOMP_NAMESPACE_END
