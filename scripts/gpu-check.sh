#!/usr/bin/env bash
# Builds and runs the GPU tests (ctest -L gpu) on a machine with nvcc, CMake and a GPU but without
# network and without the distribution packages (Eigen, fmt, nlohmann-json, Catch2).
#
#   scripts/gpu-check.sh --prepare   on a machine WITH the packages (the dev machine): copies the
#                                    header-only dependencies into .deps/ (git-ignored), to be carried
#                                    to the GPU machine with the working tree.
#   scripts/gpu-check.sh             on the GPU machine: configures build-gpu/ with
#                                    -DCLUSCOMP_VENDORED_DEPS=.deps, builds only the GPU tests, the
#                                    kernel library, the .cuh self-containment check and the GPU
#                                    benchmarks, runs ctest -L gpu, compute-sanitizer memcheck over
#                                    the GPU tests (where it works), the GPU benchmarks
#                                    (bench/gpu), and prints a table (test, result, time).
#
# Environment: CLUSCOMP_CUDA_ARCHS (default: the GPU's compute capability from nvidia-smi, else 90),
# CLUSCOMP_GPU_BUILD_DIR (default build-gpu), CLUSCOMP_JOBS (default nproc), CLUSCOMP_GPU_SANITIZE=0 /
# CLUSCOMP_GPU_BENCH=0 to leave out memcheck / the benchmarks; CLUSCOMP_GPU_SANITIZE_TIMEOUT:
# seconds per memcheck run (default 300). Order: build, tests, benchmarks, memcheck.
# Exit status: 0 when every GPU test passed; 1 on a build or test failure, a memcheck error or a
# failed benchmark (its exactness check included); 2 when tests were
# skipped although nvidia-smi sees a GPU (the tests could not use it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS="$ROOT/.deps"

prepare() {
  local eigen="${EIGEN_INCLUDE_DIR:-/usr/include/eigen3}"
  local fmt_dir="${FMT_INCLUDE_DIR:-/usr/include}"
  local json_dir="${NLOHMANN_INCLUDE_DIR:-/usr/include}"
  local catch_dir="${CATCH2_INCLUDE_DIR:-/usr/include}"
  [[ -f "$eigen/Eigen/Core" ]] || { echo "gpu-check: no Eigen at $eigen (apt-get install libeigen3-dev)" >&2; exit 1; }
  [[ -f "$fmt_dir/fmt/format.h" && -f "$fmt_dir/fmt/format-inl.h" ]] ||
    { echo "gpu-check: no header-only-capable fmt at $fmt_dir/fmt (libfmt-dev)" >&2; exit 1; }
  [[ -f "$json_dir/nlohmann/json.hpp" ]] || { echo "gpu-check: no nlohmann/json.hpp in $json_dir" >&2; exit 1; }
  [[ -f "$catch_dir/catch2/catch.hpp" ]] || { echo "gpu-check: no catch2/catch.hpp in $catch_dir" >&2; exit 1; }
  grep -q '#define CATCH_VERSION_MAJOR 2' "$catch_dir/catch2/catch.hpp" ||
    { echo "gpu-check: $catch_dir/catch2/catch.hpp is not Catch2 v2" >&2; exit 1; }

  rm -rf "$DEPS"
  mkdir -p "$DEPS/include/eigen3" "$DEPS/include/catch2"
  cp -r "$eigen/Eigen" "$DEPS/include/eigen3/"
  [[ -f "$eigen/signature_of_eigen3_matrix_library" ]] && cp "$eigen/signature_of_eigen3_matrix_library" "$DEPS/include/eigen3/"
  cp -r "$fmt_dir/fmt" "$DEPS/include/"
  cp -r "$json_dir/nlohmann" "$DEPS/include/"
  cp "$catch_dir/catch2/catch.hpp" "$DEPS/include/catch2/"
  {
    echo "# Vendored header-only dependencies for scripts/gpu-check.sh (made $(date -u +%FT%TZ) on $(hostname))"
    echo "eigen $(sed -n 's/#define EIGEN_\(WORLD\|MAJOR\|MINOR\)_VERSION \([0-9]*\)/\2/p' "$eigen/Eigen/src/Core/util/Macros.h" | paste -sd.)"
    echo "fmt $(sed -n 's/#define FMT_VERSION \([0-9]*\)/\1/p' "$fmt_dir/fmt/core.h")"
    echo "nlohmann_json $(sed -n 's/#define NLOHMANN_JSON_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$json_dir/nlohmann/detail/abi_macros.hpp" "$json_dir/nlohmann/json.hpp" 2>/dev/null | head -3 | paste -sd.)"
    echo "catch2 $(sed -n 's/#define CATCH_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' "$catch_dir/catch2/catch.hpp" | paste -sd.)"
  } > "$DEPS/MANIFEST.txt"
  echo "gpu-check: vendored dependencies in $DEPS ($(du -sh "$DEPS" | cut -f1)):"
  cat "$DEPS/MANIFEST.txt"
  echo "Carry .deps to the GPU machine with the working tree and run scripts/gpu-check.sh there."
}

gpu_name() {
  command -v nvidia-smi >/dev/null 2>&1 &&
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -1 || true
}

check() {
  [[ -f "$DEPS/include/catch2/catch.hpp" ]] ||
    { echo "gpu-check: $DEPS is missing: run 'scripts/gpu-check.sh --prepare' where the packages are, and carry .deps" >&2; exit 1; }
  if ! command -v nvcc >/dev/null 2>&1; then
    [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "gpu-check: nvcc not found" >&2; exit 1; }
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  export CUDACXX="${CUDACXX:-$(command -v nvcc)}"

  local archs="${CLUSCOMP_CUDA_ARCHS:-}"
  if [[ -z "$archs" ]]; then
    archs="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)"
    [[ "$archs" =~ ^[0-9]+$ ]] || archs=90
  fi
  local build="${CLUSCOMP_GPU_BUILD_DIR:-$ROOT/build-gpu}"
  local jobs="${CLUSCOMP_JOBS:-$(nproc)}"

  echo "==== [gpu-check] configure ($build, CUDA architectures $archs, $(nvcc --version | tail -1))"
  cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DCLUSCOMP_VENDORED_DEPS="$DEPS" -DCMAKE_CUDA_ARCHITECTURES="$archs" \
        -DCLUSCOMP_BUILD_EXAMPLES=OFF -DCLUSCOMP_BUILD_BENCH=OFF >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; echo "gpu-check: configure failed" >&2; exit 1; }
  grep -q '^CMAKE_CUDA_COMPILER:.*nvcc' "$build/CMakeCache.txt" ||
    { cat "$build.configure.log"; echo "gpu-check: CMake found no CUDA compiler" >&2; exit 1; }

  local targets=()
  for f in tests/gpu/test_*.cu; do [[ -e "$f" ]] && targets+=("$(basename "$f" .cu)"); done
  ((${#targets[@]})) || { echo "gpu-check: no tests/gpu/test_*.cu" >&2; exit 1; }
  compgen -G "kernels/*.cu" >/dev/null && targets+=(cluscomp_kernels)
  if grep -q 'cluscomp_cuda_header_check' "$build/Makefile" "$build/build.ninja" 2>/dev/null; then
    targets+=(cluscomp_cuda_header_check)
  fi
  for f in bench/gpu/bench_*_gpu.cu; do [[ -e "$f" ]] && targets+=("$(basename "$f" .cu)"); done

  echo "==== [gpu-check] build: ${targets[*]}"
  cmake --build "$build" -j "$jobs" --target "${targets[@]}"

  echo "==== [gpu-check] ctest -L gpu"
  local log="$build/ctest-gpu.log" rc=0
  set +e
  ctest --test-dir "$build" -L gpu --output-on-failure 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e

  local gpu
  gpu="$(gpu_name)"
  echo
  echo "==== [gpu-check] summary"
  echo "GPU: ${gpu:-none found by nvidia-smi}"
  printf '%-28s %-22s %10s\n' test result seconds
  # ctest lines look like: "1/2 Test #5: test_decode_gpu ..................   Passed    0.52 sec"
  sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: +([^ ]+) +\.*(\*\*\*)? *(.*[^ ]) +([0-9.]+) +sec.*$/\1|\3|\4/p' "$log" |
    while IFS='|' read -r name result secs; do printf '%-28s %-22s %10s\n' "$name" "$result" "$secs"; done
  local skipped
  skipped="$(grep -cE 'Test +#[0-9]+: .*Skipped' "$log" || true)"

  # The GPU benchmarks (bench/gpu/bench_*_gpu.cu): each checks its results against a reference
  # first, then times against its baselines in the same process (decode: device copy, memset and
  # the generic kernels).
  local brc=0
  if [[ -n "$gpu" && ${CLUSCOMP_GPU_BENCH:-1} == 1 ]]; then
    for f in bench/gpu/bench_*_gpu.cu; do
      local b
      b="$(basename "$f" .cu)"
      echo "==== [gpu-check] $b"
      set +e
      "$build/tests/$b" 2>&1 | tee "$build/$b.log"
      local r=${PIPESTATUS[0]}
      set -e
      ((r == 0)) || brc=$r
    done
  fi
  # compute-sanitizer memcheck over the GPU tests, where the tool exists and can use the device
  # (it cannot under gVisor: "Device not supported"). The tests' one deliberate failed cudaMalloc
  # is an API error, not a memory error, hence --report-api-errors no.
  local sanitizer="" msan=0
  sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
  if [[ -n "$sanitizer" && -n "$gpu" && ${CLUSCOMP_GPU_SANITIZE:-1} == 1 ]]; then
    echo "==== [gpu-check] compute-sanitizer memcheck"
    for f in tests/gpu/test_*.cu; do
      local t
      t="$(basename "$f" .cu)"
      # '~[large]': test cases tagged [large] (e.g. K = 65536 k-means against the CPU path) run in
      # ctest above but not under memcheck, whose slowdown would exceed the timeout.
      if timeout "${CLUSCOMP_GPU_SANITIZE_TIMEOUT:-300}" "$sanitizer" --tool memcheck --report-api-errors no --error-exitcode 3 "$build/tests/$t" '~[large]' \
          >"$build/memcheck-$t.log" 2>&1; then
        echo "memcheck $t: $(grep -m1 'ERROR SUMMARY' "$build/memcheck-$t.log" || echo 'clean')"
      else
        msan=1
        echo "memcheck $t: FAILED"; tail -40 "$build/memcheck-$t.log"
      fi
    done
  fi

  if ((msan != 0 || brc != 0)); then
    echo "gpu-check: FAILED (memcheck $msan, bench exit $brc)"
    exit 1
  fi
  if ((rc != 0)); then
    echo "gpu-check: FAILED (ctest exit $rc)"
    exit 1
  fi
  if ((skipped > 0)) && [[ -n "$gpu" ]]; then
    echo "gpu-check: $skipped test(s) SKIPPED although nvidia-smi sees a GPU"
    exit 2
  fi
  echo "gpu-check: ok"
}

case "${1:-}" in
  --prepare) prepare ;;
  "") check ;;
  -h|--help) sed -n '2,21p' "$0" ;;
  *) echo "usage: scripts/gpu-check.sh [--prepare]" >&2; exit 1 ;;
esac
