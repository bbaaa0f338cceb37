// The Catch2 main of the GPU tests: without a usable CUDA device the executable says so and exits
// 77, which CTest reports as skipped (SKIP_RETURN_CODE); with one, it runs the tests. Catch2
// itself is catch_runner.cpp.
#include <cuda_runtime_api.h>

#include <cstdio>

#include "support/catch_runner.hpp"

int main(int argc, char** argv) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount reports 0 devices");
    return 77;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  return cluscomp_test_run_catch(argc, argv);
}
