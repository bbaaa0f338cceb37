// Explicit instantiations of the CUDA lookup GEMV/GEMM for every centroid type of the one list
// (codebook/configs.hpp). run_lookup<T> reaches every lookup kernel configuration of the list in
// cuda/lookup_gemm.cuh (d in {2, 4, 8, 16} x row tile x {shared, L2} table), run_decode_cublas<T>
// the prefill path: compile coverage for sm_80/sm_90 with -Werror, and the object whose resource
// usage scripts/check_kernel_resources.py checks for spills.
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/cuda/lookup_gemm.cuh"

CLUSCOMP_NAMESPACE_BEGIN

#define CLUSCOMP_INSTANTIATE_LOOKUP_GEMM(T, D)                                                            \
  template Status lookup_gpu::run_lookup<T>(const LookupGemmGpuArgs&, bool, cudaStream_t);                \
  template Status lookup_gpu::run_decode_cublas<T>(const LookupGemmGpuArgs&, cudaStream_t);
CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_INSTANTIATE_LOOKUP_GEMM)
#undef CLUSCOMP_INSTANTIATE_LOOKUP_GEMM

CLUSCOMP_NAMESPACE_END
