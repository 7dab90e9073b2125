#!/usr/bin/env bash
# Fuzzes the C++ model loader (Model::load_from_bytes) with libFuzzer for SECONDS (default 600).
#
#   tools/fuzz.sh [SECONDS] [extra libFuzzer flags...]
#
# Builds tests/fuzz/fuzz_load.cpp and the library with clang, libFuzzer coverage, AddressSanitizer and
# UndefinedBehaviorSanitizer (-DLSTM_FAST_FUZZ=ON) in build/fuzz, and runs it on a working corpus in
# build/fuzz/corpus seeded from tests/fuzz/corpus (small valid models). Installs clang, compiler-rt
# and Eigen from Debian when missing (needs root). One job; the last lines report the executions.
#
# A finding leaves build/fuzz/crash-* (or leak-*, timeout-*, oom-*). Keep it as a regression test:
# copy it to tests/fuzz/regressions/ (tests/test_untrusted_files.py then loads it through lf.load and
# the C++ loader, expecting a clean error), fix the loader, re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true

need=()
command -v clang++ >/dev/null || need+=(clang)
# libFuzzer's runtime ships in compiler-rt; Debian 12's clang is 14.
clang_major="$( (clang++ --version 2>/dev/null || echo 'version 14') | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)"
[ -n "$(find /usr/lib/llvm-"${clang_major}" -name 'libclang_rt.fuzzer*.a' 2>/dev/null | head -1)" ] ||
  need+=("libclang-rt-${clang_major}-dev")
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
command -v cmake >/dev/null || need+=(cmake)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

build=build/fuzz
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
mkdir -p "$build"
if ! { cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
         -DLSTM_FAST_FUZZ=ON && cmake --build "$build" --target fuzz_load --parallel 2; } >"$build/build.log" 2>&1; then
  cat "$build/build.log"
  exit 1
fi

mkdir -p "$build/corpus"
cd "$build"
# -rss_limit_mb / -malloc_limit_mb: a model file of a few KiB must not make the loader ask for GiBs.
# halt_on_error etc.: a sanitizer report is a crash.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
exec ./tests/fuzz/fuzz_load corpus ../../tests/fuzz/corpus -dict=../../tests/fuzz/safetensors.dict \
  -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -print_final_stats=1 "$@"
