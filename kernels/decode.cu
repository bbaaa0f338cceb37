// Explicit instantiations of the decode launcher and kernels for every centroid type of the one
// list (codebook/configs.hpp): compile coverage and the optional prebuilt cluscomp::kernels.
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/cuda/decode.cuh"

CLUSCOMP_NAMESPACE_BEGIN

#define CLUSCOMP_INSTANTIATE_DECODE(T, D)                                                          \
  template __global__ void decode_dense_wt_kernel<T>(CodebookView<T>, MatrixView<float>);         \
  template __global__ void decode_dense_w_kernel<T>(CodebookView<T>, MatrixView<float>);          \
  template Status detail::launch_decode_dense<T>(const CodebookView<T>&, const MatrixView<float>&, \
                                                 DecodeLayout, cudaStream_t);
CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_INSTANTIATE_DECODE)
#undef CLUSCOMP_INSTANTIATE_DECODE

CLUSCOMP_NAMESPACE_END
