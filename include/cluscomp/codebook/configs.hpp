#pragma once
/// The one list of supported codebook configurations (DESIGN.md rule 5).
///
/// `CLUSCOMP_FOR_EACH_CENTROID_TYPE(X)` names every centroid storage type together with its
/// runtime dtype. Everything that turns a runtime dtype into a template argument derives from it:
/// `CentroidTypes` (a type list for typed tests), `centroid_dtype_of<T>`, `is_supported_centroid_dtype`,
/// `visit_centroid_type` (the single runtime -> template dispatch, used by the CPU and the CUDA
/// backends alike), and the explicit instantiations in kernels/*.cu. Adding a type here adds it
/// everywhere; a dtype missing here is refused with a Status that names it.
///
/// Code widths are NOT a template parameter: every decoder reads any width 1..16 at run time
/// (core/bitpack.hpp), so the list has one axis.

#include <string>
#include <type_traits>
#include <utility>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"

/// X(storage type, DType enumerator) for every supported centroid type.
#define CLUSCOMP_FOR_EACH_CENTROID_TYPE(X) \
  X(float, kF32)                           \
  X(::cluscomp::f16, kF16)                 \
  X(::cluscomp::bf16, kBF16)

CLUSCOMP_NAMESPACE_BEGIN

/// A compile-time list of types.
template <class... Ts>
struct TypeList {
  static constexpr int size = static_cast<int>(sizeof...(Ts));
};

/// Passes a type to a generic lambda without constructing a value of it.
template <class T>
struct TypeTag {
  using type = T;
};

namespace detail {
template <class L>
struct PopFront;
template <class H, class... Ts>
struct PopFront<TypeList<H, Ts...>> {
  using type = TypeList<Ts...>;
};
#define CLUSCOMP_DETAIL_COMMA_TYPE(T, D) , T
}  // namespace detail

/// Every supported centroid storage type, in list order (float, f16, bf16).
using CentroidTypes =
    typename detail::PopFront<TypeList<void CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_COMMA_TYPE)>>::type;
#undef CLUSCOMP_DETAIL_COMMA_TYPE

/// The runtime dtype of centroid storage type T (only for types in the list).
template <class T>
struct CentroidDType;
#define CLUSCOMP_DETAIL_CENTROID_DTYPE(T, D)           \
  template <>                                          \
  struct CentroidDType<T> {                            \
    static constexpr DType value = DType::D;           \
  };
CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_CENTROID_DTYPE)
#undef CLUSCOMP_DETAIL_CENTROID_DTYPE

template <class T>
inline constexpr DType centroid_dtype_of = CentroidDType<T>::value;

/// True when `t` names a centroid type of the list.
constexpr bool is_supported_centroid_dtype(DType t) {
#define CLUSCOMP_DETAIL_MATCH(T, D) || t == DType::D
  return false CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_MATCH);
#undef CLUSCOMP_DETAIL_MATCH
}

/// "F32, F16, BF16": for messages.
inline std::string supported_centroid_dtype_names() {
  std::string s;
#define CLUSCOMP_DETAIL_NAME(T, D)  \
  if (!s.empty()) s += ", ";        \
  s += dtype_name(DType::D);
  CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_NAME)
#undef CLUSCOMP_DETAIL_NAME
  return s;
}

/// The one runtime -> template dispatch for centroid types: calls `f(TypeTag<T>{})` with the T of
/// the list whose dtype is `t`, and returns its Status. A dtype not in the list returns
/// kUnsupported naming it and `what` (the calling operation); `f` is then not called.
/// `f` must return Status for every T.
template <class F>
Status visit_centroid_type(DType t, const char* what, F&& f) {
#define CLUSCOMP_DETAIL_CASE(T, D) \
  case DType::D: return std::forward<F>(f)(TypeTag<T>{});
  switch (t) {
    CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_DETAIL_CASE)
    default: break;
  }
#undef CLUSCOMP_DETAIL_CASE
  return Status(StatusCode::kUnsupported, std::string(what) + ": centroid dtype " + dtype_name(t) +
                                              " is not supported (supported: " +
                                              supported_centroid_dtype_names() + ")");
}

/// Calls `f(TypeTag<T>{})` once for every T of a TypeList, in order (typed tests, instantiation).
template <class... Ts, class F>
void for_each_type(TypeList<Ts...>, F&& f) {
  (f(TypeTag<Ts>{}), ...);
}

CLUSCOMP_NAMESPACE_END
