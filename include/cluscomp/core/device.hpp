#pragma once
/// The backend seam's vocabulary: which device an operation computes on. Every operation that
/// computes (k-means, lookup GEMV/GEMM, the runtime's layers, training) takes a `Device` in its
/// options and dispatches on it once; the CPU and CUDA implementations behind that dispatch share
/// the core/ math. Asking for a backend that is not built or a device that is not there is a
/// Status (host/device_status.hpp), never a silent fallback to the CPU.

#include <cstring>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

enum class Device {
  kCpu,
  kCuda,
};

/// "cpu" or "cuda": the spelling of the command line's --device.
CLUSCOMP_HOST_DEVICE inline const char* device_name(Device d) {
  return d == Device::kCuda ? "cuda" : "cpu";
}

/// Parses "cpu" / "cuda" into *out; false (out untouched) for anything else.
inline bool parse_device(const char* s, Device* out) {
  if (s == nullptr) return false;
  if (std::strcmp(s, "cpu") == 0) { *out = Device::kCpu; return true; }
  if (std::strcmp(s, "cuda") == 0) { *out = Device::kCuda; return true; }
  return false;
}

CLUSCOMP_NAMESPACE_END
