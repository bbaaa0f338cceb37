#pragma once
/// Decoding a clustered matrix back to a dense fp32 matrix on the CPU: the HF weight W (out, in),
/// its transpose Wt (in, out), or a range of rows of Wt into a caller buffer.
///
/// Every element goes through CodebookView<T>::decode_vector (codebook_view.hpp), the same
/// per-vector function the GPU kernel calls: a load and a conversion to float, no arithmetic, so
/// every decoder agrees bit for bit with every other and with reference::decode_dense_ref.
/// Padding components (out not a multiple of d) are dropped.
///
/// Determinism: each output element is written exactly once from one centroid component, so the
/// result does not depend on the number of threads or how rows are split among them.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/parallel.hpp"
#include "cluscomp/core/view.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Which dense matrix a decode produces.
enum class DecodeLayout {
  kW,   // the HF weight W, (out, in)
  kWt,  // its transpose Wt, (in, out): one row per input channel
};

inline const char* decode_layout_name(DecodeLayout l) { return l == DecodeLayout::kW ? "W" : "Wt"; }

/// Options of the whole-matrix CPU decoders.
struct DecodeOptions {
  /// Worker threads; 0 = std::thread::hardware_concurrency(). Small matrices (below
  /// `min_elements_per_thread` elements per thread) use fewer; 1 runs in the calling thread.
  int num_threads = 0;
  int64_t min_elements_per_thread = int64_t{1} << 18;
};

namespace detail {

/// Codes are unpacked in runs of this many into a stack buffer (no heap allocation).
inline constexpr int64_t kDecodeCodeRun = 256;
/// W is decoded in tiles of kDecodeTileCols input columns x at most kDecodeBandRows output rows
/// (16 KiB on the stack), then written row by row.
inline constexpr int64_t kDecodeBandRows = 64;
inline constexpr int64_t kDecodeTileCols = 64;

/// Checks the view's own fields (a view built by hand can hold anything).
inline Status check_decode_view(int64_t out, int64_t in, int64_t out_pad, int64_t k, int d,
                                int num_codebooks, int code_bits, bool have_centroids,
                                bool have_codes, const char* what) {
  auto bad = [what](const std::string& m) {
    return Status(StatusCode::kInvalidArgument, std::string(what) + ": " + m);
  };
  if (!have_centroids || !have_codes) return bad("null centroid or code pointer");
  if (out <= 0 || in <= 0)
    return bad("out and in must be positive, got (" + std::to_string(out) + ", " + std::to_string(in) + ")");
  if (d < 1 || d > 16) return bad("d must be in 1..16, got " + std::to_string(d));
  if (out_pad != (out + d - 1) / d * d)
    return bad("out_pad " + std::to_string(out_pad) + " is not out = " + std::to_string(out) +
               " rounded up to a multiple of d = " + std::to_string(d));
  if (k < 1) return bad("K must be positive, got " + std::to_string(k));
  if (num_codebooks < 1 || num_codebooks > in)
    return bad("S must be in 1..in, got " + std::to_string(num_codebooks));
  if (code_bits < 1 || code_bits > 16)
    return bad("code width must be in 1..16 bits, got " + std::to_string(code_bits));
  return Status();
}

template <class T>
Status check_decode_view(const CodebookView<T>& cb, const char* what) {
  return check_decode_view(cb.out, cb.in, cb.out_pad, cb.k, cb.d, cb.num_codebooks, cb.code_bits,
                           cb.centroids != nullptr, cb.codes != nullptr, what);
}

inline Status check_decode_output(const MatrixView<float>& dst, int64_t rows, int64_t cols,
                                  const char* what) {
  if (dst.data == nullptr)
    return Status(StatusCode::kInvalidArgument, std::string(what) + ": null output");
  if (dst.rows != rows || dst.cols != cols)
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + ": output is (" + std::to_string(dst.rows) + ", " +
                      std::to_string(dst.cols) + "), expected (" + std::to_string(rows) + ", " +
                      std::to_string(cols) + ")");
  return Status();
}

/// Wt rows [i0, i1) into dst rows 0..i1-i0-1; arguments already checked.
template <class T>
void decode_wt_rows_unchecked(const CodebookView<T>& cb, int64_t i0, int64_t i1,
                              const MatrixView<float>& dst) {
  uint32_t run[kDecodeCodeRun];
  const int64_t vpr = cb.vectors_per_row();
  for (int64_t i = i0; i < i1; ++i) {
    float* row = dst.data + (i - i0) * dst.row_stride;
    for (int64_t j0 = 0; j0 < vpr; j0 += kDecodeCodeRun) {
      const int64_t n = std::min(kDecodeCodeRun, vpr - j0);
      unpack_code_run(cb.codes, i * vpr + j0, n, cb.code_bits, run);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t j = j0 + r;
        cb.decode_vector(i, j, run[r], row + j * cb.d * dst.col_stride, dst.col_stride);
      }
    }
  }
}

/// W rows for vectors [j0, j1) (output channels j0*d .. min(j1*d, out)), every input column.
/// Decodes tiles of kDecodeTileCols input columns x about kDecodeBandRows output rows into a stack
/// tile (through decode_vector, as Wt rows), then writes the tile's rows as contiguous runs of W:
/// writing W column by column would touch one cache line per output row, all in the same cache
/// set when `in` is a power of two.
template <class T>
void decode_w_band_unchecked(const CodebookView<T>& cb, int64_t j0, int64_t j1,
                             const MatrixView<float>& dst) {
  uint32_t run[kDecodeBandRows];
  float tile[kDecodeTileCols][kDecodeBandRows];  // (input column, output row within the band)
  const int64_t vpr = cb.vectors_per_row();
  const int64_t band = std::max<int64_t>(1, kDecodeBandRows / cb.d);  // vectors per band
  for (int64_t jb = j0; jb < j1; jb += band) {
    const int64_t n = std::min(band, j1 - jb);
    const int64_t rows = std::min(n * cb.d, cb.out - jb * cb.d);  // live output rows
    for (int64_t ib = 0; ib < cb.in; ib += kDecodeTileCols) {
      const int64_t m = std::min(kDecodeTileCols, cb.in - ib);
      for (int64_t c = 0; c < m; ++c) {
        const int64_t i = ib + c;
        unpack_code_run(cb.codes, i * vpr + jb, n, cb.code_bits, run);
        for (int64_t r = 0; r < n; ++r) cb.decode_vector(i, jb + r, run[r], &tile[c][r * cb.d], 1);
      }
      for (int64_t o = 0; o < rows; ++o) {
        float* w = dst.data + (jb * cb.d + o) * dst.row_stride + ib * dst.col_stride;
        for (int64_t c = 0; c < m; ++c) w[c * dst.col_stride] = tile[c][o];
      }
    }
  }
}

inline int decode_thread_count(const DecodeOptions& opt, int64_t elements, int64_t units) {
  int64_t t = resolve_thread_count(opt.num_threads);
  const int64_t per = std::max<int64_t>(1, opt.min_elements_per_thread);
  t = std::min(t, std::max<int64_t>(1, elements / per));
  t = std::min(t, std::max<int64_t>(1, units));
  return static_cast<int>(t);
}

}  // namespace detail

/// Rows [i0, i1) of Wt (one input channel = out values each) into `dst`, a (i1 - i0, out) view
/// with any strides. The per-row decoder: single-threaded, allocates nothing, exact.
template <class T>
Status decode_wt_rows(const CodebookView<T>& cb, int64_t i0, int64_t i1, MatrixView<float> dst) {
  if (Status s = detail::check_decode_view(cb, "decode_wt_rows"); !s.ok()) return s;
  if (i0 < 0 || i1 < i0 || i1 > cb.in)
    return Status(StatusCode::kOutOfRange, "decode_wt_rows: rows [" + std::to_string(i0) + ", " +
                                               std::to_string(i1) + ") are not inside [0, " +
                                               std::to_string(cb.in) + ")");
  if (Status s = detail::check_decode_output(dst, i1 - i0, cb.out, "decode_wt_rows"); !s.ok()) return s;
  detail::decode_wt_rows_unchecked(cb, i0, i1, dst);
  return Status();
}

/// The dense matrix in `layout` into `dst`: (out, in) for kW, (in, out) for kWt, any strides.
/// Exact; multithreaded over rows (kWt) or output-channel bands (kW) when large; deterministic.
template <class T>
Status decode_dense(const CodebookView<T>& cb, DecodeLayout layout, MatrixView<float> dst,
                    const DecodeOptions& opt = {}) {
  if (Status s = detail::check_decode_view(cb, "decode_dense"); !s.ok()) return s;
  const bool w = layout == DecodeLayout::kW;
  if (Status s = detail::check_decode_output(dst, w ? cb.out : cb.in, w ? cb.in : cb.out, "decode_dense");
      !s.ok())
    return s;
  const int64_t elements = cb.out * cb.in;
  if (w) {
    const int64_t vpr = cb.vectors_per_row();
    const int threads = detail::decode_thread_count(opt, elements, vpr);
    parallel_static(threads, vpr, [&](int, int64_t b, int64_t e) {
      detail::decode_w_band_unchecked(cb, b, e, dst);
    });
  } else {
    const int threads = detail::decode_thread_count(opt, elements, cb.in);
    parallel_static(threads, cb.in, [&](int, int64_t b, int64_t e) {
      const MatrixView<float> part{dst.data + b * dst.row_stride, e - b, dst.cols, dst.row_stride,
                                   dst.col_stride};
      detail::decode_wt_rows_unchecked(cb, b, e, part);
    });
  }
  return Status();
}

/// Runtime-dtype form: dispatches the centroid type through the one list (configs.hpp).
inline Status decode_dense(const AnyCodebookView& cb, DecodeLayout layout, MatrixView<float> dst,
                           const DecodeOptions& opt = {}) {
  return visit_centroid_type(cb.centroid_dtype, "decode_dense", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return decode_dense(cb.typed<T>(), layout, dst, opt);
  });
}

/// Runtime-dtype per-row form (see the typed decode_wt_rows).
inline Status decode_wt_rows(const AnyCodebookView& cb, int64_t i0, int64_t i1, MatrixView<float> dst) {
  return visit_centroid_type(cb.centroid_dtype, "decode_wt_rows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return decode_wt_rows(cb.typed<T>(), i0, i1, dst);
  });
}

/// Convenience: allocates and returns the dense matrix in `layout`, row-major. Throws Error on
/// an invalid tensor; exact and deterministic like decode_dense.
inline std::vector<float> decode_dense(const CodebookTensor& t, DecodeLayout layout,
                                       const DecodeOptions& opt = {}) {
  const CodebookShape& sh = t.shape();
  const int64_t rows = layout == DecodeLayout::kW ? sh.out : sh.in;
  const int64_t cols = layout == DecodeLayout::kW ? sh.in : sh.out;
  std::vector<float> dense(static_cast<size_t>(checked_mul(static_cast<uint64_t>(rows),
                                                           static_cast<uint64_t>(cols), "decode_dense")));
  throw_if_error(decode_dense(t.any_view(), layout, make_matrix_view(dense.data(), rows, cols), opt));
  return dense;
}

CLUSCOMP_NAMESPACE_END
