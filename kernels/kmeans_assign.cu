// Explicit instantiations of the brute-force assignment kernel for every d in 1..16: compile
// coverage (sm_80..90 in CI) and the optional prebuilt cluscomp::kernels.
#include "cluscomp/cuda/kmeans_assign.cuh"

CLUSCOMP_NAMESPACE_BEGIN

#define CLUSCOMP_INSTANTIATE_ASSIGN(D)                                                                       \
  template __global__ void kmeans_assign_kernel<D>(const float*, int64_t, const float*, int64_t, uint32_t*, \
                                                   float*);                                                 \
  template Status detail::launch_kmeans_assign<D>(const KMeansAssignGpuArgs&, cudaStream_t);
CLUSCOMP_INSTANTIATE_ASSIGN(1)
CLUSCOMP_INSTANTIATE_ASSIGN(2)
CLUSCOMP_INSTANTIATE_ASSIGN(3)
CLUSCOMP_INSTANTIATE_ASSIGN(4)
CLUSCOMP_INSTANTIATE_ASSIGN(5)
CLUSCOMP_INSTANTIATE_ASSIGN(6)
CLUSCOMP_INSTANTIATE_ASSIGN(7)
CLUSCOMP_INSTANTIATE_ASSIGN(8)
CLUSCOMP_INSTANTIATE_ASSIGN(9)
CLUSCOMP_INSTANTIATE_ASSIGN(10)
CLUSCOMP_INSTANTIATE_ASSIGN(11)
CLUSCOMP_INSTANTIATE_ASSIGN(12)
CLUSCOMP_INSTANTIATE_ASSIGN(13)
CLUSCOMP_INSTANTIATE_ASSIGN(14)
CLUSCOMP_INSTANTIATE_ASSIGN(15)
CLUSCOMP_INSTANTIATE_ASSIGN(16)
#undef CLUSCOMP_INSTANTIATE_ASSIGN

CLUSCOMP_NAMESPACE_END
