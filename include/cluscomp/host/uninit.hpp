#pragma once
/// Vectors whose resize() leaves new elements of trivial types uninitialised.
///
/// std::vector<float>::resize(n) zero-fills on the calling thread: for k-means' N-sized buffers
/// (58M 4-dim points: ~2.8 GB over the engine's buffers) that was a single-threaded 6.8 s pass
/// (page faults plus memset) before any work started. With this allocator the pages are touched
/// first by the parallel loops that write them anyway. Only for buffers every element of which is
/// written before it is read.

#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// std::allocator whose value-less construct() default-initialises (a no-op for trivial types).
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  using std::allocator<T>::allocator;
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using uninit_vector = std::vector<T, DefaultInitAllocator<T>>;

CLUSCOMP_NAMESPACE_END
