#pragma once
/// Whether a backend can run here, as a Status: the first thing every dispatch function asks.
///
/// The CUDA backend exists only in code built against `cluscomp::cuda` (which defines
/// CLUSCOMP_HAVE_CUDA and links the CUDA runtime); header-only users without it get a CPU-only
/// library whose cuda requests fail with a message that says so. With it, a machine without a
/// usable GPU (no driver, no device) is a kCudaError naming what the runtime reported.

#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/error.hpp"

#if defined(CLUSCOMP_HAVE_CUDA) && CLUSCOMP_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

CLUSCOMP_NAMESPACE_BEGIN

/// Ok when `device` can run work in this build on this machine. CPU: always. CUDA: the build must
/// link cluscomp::cuda and the runtime must report at least one device.
inline Status device_status(Device device) {
  if (device == Device::kCpu) return Status();
#if defined(CLUSCOMP_HAVE_CUDA) && CLUSCOMP_HAVE_CUDA
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return Status(StatusCode::kCudaError,
                  std::string("--device cuda: no usable CUDA device (cudaGetDeviceCount: ") +
                      cudaGetErrorString(e) + ")");
  if (count == 0) return Status(StatusCode::kCudaError, "--device cuda: no CUDA device on this machine");
  return Status();
#else
  return Status(StatusCode::kUnsupported,
                "--device cuda: this build of cluscomp has no CUDA backend (configure where nvcc is "
                "found and link cluscomp::cuda)");
#endif
}

/// The status of an operation whose `device` backend is not written yet: device_status first (so
/// a missing GPU is reported as such), then kUnsupported naming the operation.
inline Status backend_status(Device device, const char* operation) {
  Status s = device_status(device);
  if (!s.ok()) return s;
  if (device == Device::kCpu) return s;
  return Status(StatusCode::kUnsupported, std::string(operation) + " has no " +
                                              device_name(device) + " backend yet (CPU only)");
}

CLUSCOMP_NAMESPACE_END
