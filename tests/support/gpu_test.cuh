#pragma once
// Helpers for tests/gpu: checked CUDA calls and a device buffer. (Skipping without a device is
// done once, by support/gpu_catch_main.cpp.)
#include <cuda_runtime.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace cluscomp_test {

#define CLUSCOMP_CUDA_REQUIRE(call)                                                    \
  do {                                                                                 \
    const cudaError_t cluscomp_e_ = (call);                                            \
    INFO(#call << ": " << cudaGetErrorName(cluscomp_e_) << ": " << cudaGetErrorString(cluscomp_e_)); \
    REQUIRE(cluscomp_e_ == cudaSuccess);                                               \
  } while (0)

/// Owning device buffer of n elements; freed on destruction.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) CLUSCOMP_CUDA_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)));
  }
  DeviceBuffer(const T* host, size_t n) : DeviceBuffer(n) { upload(host); }
  ~DeviceBuffer() {
    if (p_ != nullptr) (void)cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const T* host) {
    if (n_ > 0) CLUSCOMP_CUDA_REQUIRE(cudaMemcpy(p_, host, n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_ > 0) CLUSCOMP_CUDA_REQUIRE(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void fill_bytes(int byte) {
    if (n_ > 0) CLUSCOMP_CUDA_REQUIRE(cudaMemset(p_, byte, n_ * sizeof(T)));
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace cluscomp_test
