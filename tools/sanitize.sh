#!/usr/bin/env bash
# The whole pytest suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of lstm_fast.
#
#   tools/sanitize.sh [pytest args...]
#
# Builds the package with -DLSTM_FAST_SANITIZE=ON (GCC; build dir build/sanitize) into a throwaway
# venv and runs `python -m pytest` from the repository with the sanitizer runtimes preloaded into the
# (uninstrumented) Python interpreter. Any ASan report (out-of-bounds access, use after free, ...) or
# UBSan report (overflow, misaligned access, ...) stops the process, and so fails the run.
#
# tests/test_cpp.py runs too: the installed CMake package carries the sanitizer flags, so the C++
# unit tests (tests/cpp/api/test_model.cpp, test_handles.cpp) and the example are built and run instrumented as well.
# torch is not installed in the throwaway venv, so the torch comparisons are skipped.
# Leak detection is off (detect_leaks=0): CPython does not free everything at exit; tools/valgrind.sh
# and tools/leak_check.py look for leaks instead.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

# The venv and the build folder are kept (build/sanitize-venv, build/sanitize): a second run only
# rebuilds what changed.
venv="$repo/build/sanitize-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q numpy safetensors tqdm pytest hypothesis cmake ninja scikit-build-core pybind11 \
    "cmeel-eigen>=3.4,<4"
fi
echo "building lstm_fast with -DLSTM_FAST_SANITIZE=ON (build/sanitize)"
"$venv/bin/pip" install -q --no-build-isolation -C cmake.define.LSTM_FAST_SANITIZE=ON \
  -C build-dir=build/sanitize -C cmake.build-type=RelWithDebInfo .

libasan="$(gcc -print-file-name=libasan.so)"
libubsan="$(gcc -print-file-name=libubsan.so)"
[ -f "$libasan" ] && [ -f "$libubsan" ] || { echo "gcc's libasan/libubsan not found"; exit 1; }
export LD_PRELOAD="$libasan $libubsan"
# Reports go to files as well as stderr: pytest captures stderr, and an abort would lose it.
reports="$repo/build/sanitize-reports"
rm -rf "$reports" && mkdir -p "$reports"
# abort_on_error: a report kills the process (and fails pytest) instead of exiting quietly.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:log_path=$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
show_reports() {
  if [ -n "$(ls -A "$reports")" ]; then
    echo "== sanitizer reports ($reports):"
    head -n 60 "$reports"/*
  fi
}
trap show_reports EXIT
# The installed package, not the source tree: run from a folder that has no lstm_fast in it.
cd "$(mktemp -d)"
"$venv/bin/python" -c "import lstm_fast, sys; print('testing', lstm_fast.__file__, file=sys.stderr)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir="$repo" -c "$repo/pyproject.toml" "$repo/tests" "$@"
if [ -n "$(ls -A "$reports")" ]; then
  echo "sanitizers: reports found"
  exit 1
fi
echo "sanitizers: no findings"
