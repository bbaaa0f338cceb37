# Dependency lookup for cluscomp.
#
# Normally every dependency comes from the distribution's packages through find_package.
# With -DCLUSCOMP_VENDORED_DEPS=<dir> the header-only dependencies come instead from copies in
# <dir> (made by `scripts/gpu-check.sh --prepare`), as INTERFACE IMPORTED targets with the same
# names find_package would give, for machines that have a compiler and CMake but none of the
# packages and no network (the GPU machines). Layout of <dir>:
#   include/eigen3/Eigen/...        -> Eigen3::Eigen
#   include/fmt/*.h                 -> fmt::fmt (header-only: FMT_HEADER_ONLY=1)
#   include/nlohmann/json.hpp       -> nlohmann_json::nlohmann_json
#   include/catch2/catch.hpp        -> Catch2::Catch2 (v2 single header; cluscomp_find_test_deps)

set(CLUSCOMP_VENDORED_DEPS "" CACHE PATH
    "Folder with vendored header-only dependencies (scripts/gpu-check.sh --prepare); empty = find_package")

if(CLUSCOMP_VENDORED_DEPS)
  get_filename_component(CLUSCOMP_VENDORED_DEPS_DIR "${CLUSCOMP_VENDORED_DEPS}" ABSOLUTE
                         BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  set(CLUSCOMP_VENDORED_INCLUDE "${CLUSCOMP_VENDORED_DEPS_DIR}/include")
  message(STATUS "cluscomp: vendored dependencies from ${CLUSCOMP_VENDORED_DEPS_DIR}")
endif()

# An INTERFACE IMPORTED target for a vendored header folder; `probe` must exist inside it.
# Imported include folders are SYSTEM for consumers, so -Werror never applies to them.
function(_cluscomp_vendored_target target include_dir probe)
  if(TARGET ${target})
    return()
  endif()
  if(NOT EXISTS "${include_dir}/${probe}")
    message(FATAL_ERROR "cluscomp: CLUSCOMP_VENDORED_DEPS has no ${include_dir}/${probe}; "
                        "run scripts/gpu-check.sh --prepare on a machine with the packages")
  endif()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${include_dir}")
endfunction()

if(CLUSCOMP_VENDORED_DEPS)
  _cluscomp_vendored_target(Eigen3::Eigen "${CLUSCOMP_VENDORED_INCLUDE}/eigen3" "Eigen/Core")
  _cluscomp_vendored_target(fmt::fmt "${CLUSCOMP_VENDORED_INCLUDE}" "fmt/format.h")
  set_property(TARGET fmt::fmt APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS FMT_HEADER_ONLY=1)
  _cluscomp_vendored_target(nlohmann_json::nlohmann_json "${CLUSCOMP_VENDORED_INCLUDE}" "nlohmann/json.hpp")
else()
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
  find_package(fmt REQUIRED)
  find_package(nlohmann_json 3 REQUIRED)
endif()
find_package(Threads REQUIRED)

# Test-only dependencies (Catch2 v2), looked up when the tests are configured.
macro(cluscomp_find_test_deps)
  if(CLUSCOMP_VENDORED_DEPS)
    _cluscomp_vendored_target(Catch2::Catch2 "${CLUSCOMP_VENDORED_INCLUDE}" "catch2/catch.hpp")
  elseif(NOT TARGET Catch2::Catch2)
    find_package(Catch2 2 REQUIRED)
  endif()
endmacro()
