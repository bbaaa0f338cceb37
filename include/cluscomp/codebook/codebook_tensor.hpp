#pragma once
/// CodebookTensor: the owning, host-side form of one clustered weight matrix: S codebooks of K
/// centroids of dimension d (fp32/fp16/bf16), the packed codes, and the original (out, in) shape.
/// See codebook_view.hpp for the geometry and docs/format.md for how it is stored.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Everything that fixes the size and layout of a clustered matrix.
struct CodebookShape {
  int64_t out = 0;  // HF weight rows (output features)
  int64_t in = 0;   // HF weight columns (input features)
  int d = 4;        // vector dimension
  int64_t k = 0;    // centroids per codebook
  int num_codebooks = 1;  // S: contiguous ranges of input rows, one codebook each
  int code_bits = 0;      // packed code width; 0 means bits_for_count(k)
  DType centroid_dtype = DType::kF32;

  int64_t out_pad() const { return d > 0 ? (out + d - 1) / d * d : 0; }
  int64_t vectors_per_row() const { return d > 0 ? out_pad() / d : 0; }
  int64_t num_vectors() const { return in * vectors_per_row(); }
  int effective_code_bits() const { return code_bits == 0 ? bits_for_count(k) : code_bits; }
  int64_t num_centroid_values() const { return static_cast<int64_t>(num_codebooks) * k * d; }

  /// Checks every field; the message names the bad value.
  Status validate() const {
    auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, m); };
    if (out <= 0 || in <= 0)
      return bad("codebook shape: out and in must be positive, got (" + std::to_string(out) + ", " +
                 std::to_string(in) + ")");
    if (d < 1 || d > 16) return bad("codebook shape: d must be in 1..16, got " + std::to_string(d));
    if (k < 1 || k > 65536) return bad("codebook shape: K must be in 1..65536, got " + std::to_string(k));
    if (num_codebooks < 1 || num_codebooks > in)
      return bad("codebook shape: S must be in 1..in (" + std::to_string(in) + "), got " +
                 std::to_string(num_codebooks));
    const int bits = effective_code_bits();
    if (bits < 1 || bits > 16)
      return bad("codebook shape: code width must be in 1..16 bits, got " + std::to_string(bits));
    if ((int64_t{1} << bits) < k)
      return bad("codebook shape: " + std::to_string(bits) + "-bit codes cannot index K = " +
                 std::to_string(k) + " centroids");
    if (!is_supported_centroid_dtype(centroid_dtype))
      return Status(StatusCode::kUnsupported, std::string("codebook shape: centroid dtype ") +
                                                  dtype_name(centroid_dtype) + " is not one of " +
                                                  supported_centroid_dtype_names());
    // Refuse sizes whose byte counts overflow, before anything is allocated.
    if (in > (int64_t{1} << 40) || out > (int64_t{1} << 40))
      return bad("codebook shape: dimensions too large");
    return Status();
  }

  /// Bits per weight as the reference counts it: 16-bit codes and 16-bit centroids, codebooks
  /// included, padding charged to the matrix (CLUSCOMP.md §1).
  double bpw_reference() const { return bpw_with(16, 16); }

  /// True bits per weight of this layout: packed codes at effective_code_bits() and centroids at
  /// their storage width.
  double bpw_packed() const { return bpw_with(effective_code_bits(), 8 * dtype_size(centroid_dtype)); }

  double bpw_with(int bits_code, int bits_centroid) const {
    const double weights = static_cast<double>(in) * static_cast<double>(out);
    return static_cast<double>(bits_code) / d * static_cast<double>(out_pad()) / static_cast<double>(out) +
           static_cast<double>(num_codebooks) * static_cast<double>(k) * d * bits_centroid / weights;
  }

  bool operator==(const CodebookShape& o) const {
    return out == o.out && in == o.in && d == o.d && k == o.k && num_codebooks == o.num_codebooks &&
           effective_code_bits() == o.effective_code_bits() && centroid_dtype == o.centroid_dtype;
  }
  bool operator!=(const CodebookShape& o) const { return !(*this == o); }
};

/// The typed view of a clustered matrix of `shape` whose centroids (S, K, d of T) and packed codes
/// live at the given pointers (host or device memory: nothing is dereferenced here); the one place
/// a shape becomes a view (CodebookTensor::view, the autograd's lookup linear, TrainBlock).
template <class T>
CodebookView<T> make_codebook_view(const CodebookShape& shape, const T* centroids, const uint32_t* codes) {
  return CodebookView<T>{centroids, codes, shape.out, shape.in, shape.out_pad(), shape.k, shape.d,
                         shape.num_codebooks, shape.effective_code_bits()};
}

/// An untyped view of a clustered matrix of `shape` whose centroids and packed codes live at the
/// given pointers (host or device memory: nothing is dereferenced here). `shape` should be valid.
inline AnyCodebookView make_any_codebook_view(const CodebookShape& shape, const void* centroids,
                                              const uint32_t* codes) {
  AnyCodebookView v;
  v.centroids = centroids;
  v.centroid_dtype = shape.centroid_dtype;
  v.codes = codes;
  v.out = shape.out;
  v.in = shape.in;
  v.out_pad = shape.out_pad();
  v.k = shape.k;
  v.d = shape.d;
  v.num_codebooks = shape.num_codebooks;
  v.code_bits = shape.effective_code_bits();
  return v;
}

/// The untyped form of a typed view (T must be one of the list in configs.hpp).
template <class T>
AnyCodebookView make_any_codebook_view(const CodebookView<T>& v) {
  AnyCodebookView a;
  a.centroids = v.centroids;
  a.centroid_dtype = centroid_dtype_of<T>;
  a.codes = v.codes;
  a.out = v.out;
  a.in = v.in;
  a.out_pad = v.out_pad;
  a.k = v.k;
  a.d = v.d;
  a.num_codebooks = v.num_codebooks;
  a.code_bits = v.code_bits;
  return a;
}

/// Owning clustered matrix. Centroids are stored as raw bytes of `centroid_dtype`, so the same
/// object holds fp32, fp16 or bf16 codebooks without templates; typed access goes through view<T>().
class CodebookTensor {
 public:
  CodebookTensor() = default;

  /// Zero centroids and zero codes of the given shape. Throws Error on an invalid shape.
  explicit CodebookTensor(const CodebookShape& shape) : shape_(shape) {
    throw_if_error(shape.validate());
    shape_.code_bits = shape.effective_code_bits();
    const uint64_t cbytes = checked_mul(static_cast<uint64_t>(shape_.num_centroid_values()),
                                        static_cast<uint64_t>(dtype_size(shape_.centroid_dtype)),
                                        "codebook centroids");
    centroids_.assign(cbytes, 0);
    codes_.assign(static_cast<size_t>(packed_words(shape_.num_vectors(), shape_.code_bits)), 0u);
  }

  const CodebookShape& shape() const { return shape_; }
  int code_bits() const { return shape_.code_bits; }

  /// Raw centroid bytes, (S, K, d) row-major in centroid_dtype.
  std::vector<unsigned char>& centroid_bytes() { return centroids_; }
  const std::vector<unsigned char>& centroid_bytes() const { return centroids_; }
  /// Packed code words (bitpack.hpp layout).
  std::vector<uint32_t>& code_words() { return codes_; }
  const std::vector<uint32_t>& code_words() const { return codes_; }

  /// Component t of centroid c of codebook s, as float (exact).
  float centroid(int64_t s, int64_t c, int t) const {
    const int64_t idx = (s * shape_.k + c) * shape_.d + t;
    return static_cast<float>(load_as_double(centroids_.data(), shape_.centroid_dtype, idx));
  }

  /// Stores a centroid component, rounding to the storage dtype (RNE).
  void set_centroid(int64_t s, int64_t c, int t, float v) {
    const int64_t idx = (s * shape_.k + c) * shape_.d + t;
    unsigned char* p = centroids_.data() + idx * dtype_size(shape_.centroid_dtype);
    switch (shape_.centroid_dtype) {
      case DType::kF16: {
        const uint16_t b = float_to_half_bits(v);
        std::memcpy(p, &b, 2);
        break;
      }
      case DType::kBF16: {
        const uint16_t b = float_to_bf16_bits(v);
        std::memcpy(p, &b, 2);
        break;
      }
      default: std::memcpy(p, &v, 4);
    }
  }

  uint32_t code(int64_t v) const { return unpack_code(codes_.data(), v, shape_.code_bits); }
  void set_code(int64_t v, uint32_t c) { store_code(codes_.data(), v, shape_.code_bits, c); }

  /// Replaces all codes from an unpacked array of num_vectors() entries; each must be < K.
  template <class CodeT>
  Status set_codes(const CodeT* codes, int64_t n) {
    if (n != shape_.num_vectors())
      return Status(StatusCode::kInvalidArgument,
                    "set_codes: expected " + std::to_string(shape_.num_vectors()) + " codes, got " +
                        std::to_string(n));
    for (int64_t i = 0; i < n; ++i) {
      if (static_cast<int64_t>(codes[i]) < 0 || static_cast<int64_t>(codes[i]) >= shape_.k)
        return Status(StatusCode::kOutOfRange, "set_codes: code " + std::to_string(codes[i]) +
                                                   " at vector " + std::to_string(i) +
                                                   " is not below K = " + std::to_string(shape_.k));
    }
    pack_codes(codes, n, shape_.code_bits, codes_.data());
    return Status();
  }

  /// All codes unpacked.
  std::vector<uint32_t> codes() const {
    std::vector<uint32_t> c(static_cast<size_t>(shape_.num_vectors()));
    unpack_codes(codes_.data(), shape_.num_vectors(), shape_.code_bits, c.data());
    return c;
  }

  /// Checks that every code is below K (files can hold anything).
  Status validate_codes() const {
    const int64_t n = shape_.num_vectors();
    for (int64_t v = 0; v < n; ++v) {
      const uint32_t c = code(v);
      if (c >= static_cast<uint64_t>(shape_.k))
        return Status(StatusCode::kFormatError, "code " + std::to_string(c) + " at vector " +
                                                    std::to_string(v) + " is not below K = " +
                                                    std::to_string(shape_.k));
    }
    return Status();
  }

  /// Typed view for kernels. T must match centroid_dtype (float/F32, f16/F16, bf16/BF16).
  template <class T>
  CodebookView<T> view() const {
    return make_codebook_view(shape_, reinterpret_cast<const T*>(centroids_.data()), codes_.data());
  }

  /// Untyped view (centroid dtype carried at run time), e.g. for decode_dense / the GPU API.
  AnyCodebookView any_view() const {
    return make_any_codebook_view(shape_, centroids_.data(), codes_.data());
  }

  /// Bytes this matrix occupies in memory: centroids + packed codes.
  int64_t storage_bytes() const {
    return static_cast<int64_t>(centroids_.size() + codes_.size() * sizeof(uint32_t));
  }

 private:
  CodebookShape shape_;
  std::vector<unsigned char> centroids_;
  std::vector<uint32_t> codes_;
};

/// Calls f(CodebookView<T>) with T matching the tensor's centroid dtype, for callers whose f
/// returns something other than Status; driven by the same list as visit_centroid_type
/// (codebook/configs.hpp). Throws Error(kUnsupported) for a dtype outside the list.
template <class F>
decltype(auto) dispatch_centroid_type(const CodebookTensor& t, F&& f) {
#define CLUSCOMP_DETAIL_CASE(T, D) \
  case DType::D: return f(t.view<T>());
  switch (t.shape().centroid_dtype) {
    CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_CASE)
    default:
      throw Error(StatusCode::kUnsupported,
                  std::string("centroid dtype ") + dtype_name(t.shape().centroid_dtype));
  }
#undef CLUSCOMP_DETAIL_CASE
}

CLUSCOMP_NAMESPACE_END
