#pragma once
/// Non-owning views: pointer + extents + strides (in elements), passed by value to kernels.

#include <cstdint>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// A strided 1-D view.
template <class T>
struct VectorView {
  T* data = nullptr;
  int64_t size = 0;
  int64_t stride = 1;

  CLUSCOMP_HOST_DEVICE T& operator[](int64_t i) const { return data[i * stride]; }
  CLUSCOMP_HOST_DEVICE bool empty() const { return size == 0; }
};

/// A 2-D view; element (r, c) is at data[r * row_stride + c * col_stride].
template <class T>
struct MatrixView {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;

  CLUSCOMP_HOST_DEVICE T& operator()(int64_t r, int64_t c) const {
    return data[r * row_stride + c * col_stride];
  }
  CLUSCOMP_HOST_DEVICE VectorView<T> row(int64_t r) const {
    return VectorView<T>{data + r * row_stride, cols, col_stride};
  }
  CLUSCOMP_HOST_DEVICE bool contiguous() const { return col_stride == 1 && row_stride == cols; }
};

/// A dense row-major (rows, cols) view.
template <class T>
CLUSCOMP_HOST_DEVICE MatrixView<T> make_matrix_view(T* data, int64_t rows, int64_t cols) {
  return MatrixView<T>{data, rows, cols, cols, 1};
}

template <class T>
CLUSCOMP_HOST_DEVICE VectorView<T> make_vector_view(T* data, int64_t size) {
  return VectorView<T>{data, size, 1};
}

CLUSCOMP_NAMESPACE_END
