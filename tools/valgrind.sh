#!/usr/bin/env bash
# Runs the C++ unit tests (tests/cpp: test_model, the public API, and test_internal) under valgrind
# memcheck with --leak-check=full: no invalid read or write, no use of uninitialised memory, no leak.
# Exit status 0 when clean.
#
#   tools/valgrind.sh
#
# Builds the library and the tests in build/valgrind with plain CMake (Debug info, -O1, no allocation
# counting hooks, which would hide malloc from valgrind). Installs valgrind, cmake, Eigen and
# GoogleTest from Debian when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v cmake >/dev/null || need+=(cmake)
command -v c++ >/dev/null || need+=(g++)
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

build=build/valgrind
mkdir -p "$build"
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
         -DLSTM_FAST_BUILD_TESTS=ON -DLSTM_FAST_TEST_ALLOC_HOOKS=OFF &&
       cmake --build "$build" --target test_model test_internal --parallel 2; } >"$build/build.log" 2>&1; then
  cat "$build/build.log"
  exit 1
fi

# The baseline and AVX2 kernels (each ISA has its own); valgrind does not emulate AVX-512, so those
# kernels are covered by tools/sanitize.sh instead. A valgrind error or leak makes the exit status 3.
for isa in baseline avx2; do
  if [ "$isa" = avx2 ] && ! grep -qw avx2 /proc/cpuinfo; then
    echo "== $isa: not supported by this CPU, skipped"
    continue
  fi
  for program in test_model test_internal; do
    echo "== LSTM_FAST_ISA=$isa valgrind --leak-check=full $build/tests/cpp/$program"
    LSTM_FAST_ISA=$isa valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible \
      --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=3 "$build/tests/cpp/$program" --gtest_brief=1
  done
done
echo "valgrind: clean"
