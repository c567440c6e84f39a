#!/usr/bin/env bash
# fuzz.sh - run the libFuzzer targets of tests/fuzz/ for a set time each (not run by CI).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      default 60 s each; targets: query chunks grant jsonl
#
# Builds each target with clang -fsanitize=fuzzer,address,undefined from tests/fuzz/fuzz_*.c and
# the parsers it drives (src/json.c, src/util.c, src/error.c) into FUZZ_BUILD (default
# build-fuzz), copies tests/fuzz/corpus/<target>/ into a working corpus there (the repository's
# corpus only changes with MERGE=1), and runs it with tests/fuzz/json.dict. Crashes, leaks,
# timeouts and broken contracts (fuzz.h) are written to FUZZ_BUILD/artifacts/<target>/; to keep
# one as a regression test, copy it into tests/fuzz/corpus/<target>/ with the fix (CTest
# replays that folder: `ctest -R fuzz_`).
#
# MERGE=1 afterwards minimises what the run found into tests/fuzz/corpus/<target>/ (review
# before committing). JOBS (default 1) runs that many fuzzing processes per target.
# Exit 1 if any target found something.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(query chunks grant jsonl)
OUT=${FUZZ_BUILD:-$ROOT/build-fuzz}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
CC=${CC_FUZZ:-clang}
JOBS=${JOBS:-1}

command -v "$CC" > /dev/null || {
  echo "fuzz.sh: $CC not found; install it with: scripts/install-deps.sh --fuzz" >&2; exit 1; }
mkdir -p "$OUT"
read -r -a CJSON_CFLAGS <<< "$(pkg-config --cflags libcjson)"
read -r -a LIBS <<< "$(pkg-config --libs libcjson libcrypto) -lm"
# shellcheck disable=SC2054 # the commas belong to -fsanitize=
CFLAGS=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=all -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
        -I"$ROOT/src" -I"$ROOT/include" "${CJSON_CFLAGS[@]}")

found=0
summary=()
for t in "${TARGETS[@]}"; do
  src=$ROOT/tests/fuzz/fuzz_$t.c
  [ -f "$src" ] || { echo "fuzz.sh: no target $t ($src)" >&2; exit 2; }
  echo "fuzz.sh: building $t" >&2
  "$CC" "${CFLAGS[@]}" -o "$OUT/fuzz_$t" "$src" "$ROOT/src/json.c" "$ROOT/src/util.c" \
    "$ROOT/src/error.c" "${LIBS[@]}"
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
  cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$OUT/corpus/$t/" 2> /dev/null || true
  echo "fuzz.sh: running $t for $SECS s" >&2
  rc=0
  par=()
  [ "$JOBS" -le 1 ] || par=(-jobs="$JOBS" -workers="$JOBS")
  (cd "$OUT" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    "$OUT/fuzz_$t" "$OUT/corpus/$t" -dict="$ROOT/tests/fuzz/json.dict" \
    -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    "${par[@]}" -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$t/") > "$OUT/$t.log" 2>&1 || rc=$?
  [ "$JOBS" -le 1 ] || cat "$OUT"/fuzz-*.log >> "$OUT/$t.log" 2> /dev/null || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log" | awk '{s+=$1} END {print s+0}')
  cov=$(grep -o 'cov: [0-9]*' "$OUT/$t.log" | tail -1 | cut -d' ' -f2 || true)
  crashes=$(find "$OUT/artifacts/$t" -type f | wc -l)
  summary+=("$t: ${execs} runs, coverage ${cov:-?} edges, corpus $(find "$OUT/corpus/$t" -type f | wc -l) inputs, findings $crashes (exit $rc)")
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
    found=1
    grep -m5 -E 'ERROR|contract broken|runtime error|Test unit written' "$OUT/$t.log" >&2 || true
  fi
  if [ "${MERGE:-0}" = 1 ]; then
    "$OUT/fuzz_$t" -merge=1 "$ROOT/tests/fuzz/corpus/$t" "$OUT/corpus/$t" > /dev/null 2>&1 || true
  fi
done
printf 'fuzz.sh: %s\n' "${summary[@]}"
exit $found
