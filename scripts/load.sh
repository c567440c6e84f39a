#!/usr/bin/env bash
# load.sh - drive `steward serve` with wrk on loopback and report queries/s, p99 and errors.
#
# Builds steward if needed, creates a store in a temporary folder, loads N chunks of dimension
# DIM into one product with `steward ingest --vectors` (synthetic data from scripts/load_gen.c),
# creates four consumer principals with different grants (so the allow-sets differ: all rows,
# ~65%, ~30% and a research purpose whose text is withheld), publishes, serves on
# 127.0.0.1:0, warms up, then runs wrk for DURATION seconds with CONNS connections and
# scripts/load.lua, which rotates ~100 pre-generated query bodies (k=10, a third with filters)
# across the principals. Prints the machine and its load, the server's CPU use, and last a line
#     bench: http_qps=N p99_ms=M errors=E
# where N counts 2xx answers per second, M is wrk's p99 latency and E every non-2xx answer,
# socket error and timeout. Exits 1 if there was a 5xx or the server did not stop cleanly
# (with a sanitizer build, BUILD=build-asan, that catches ASan/UBSan reports under load).
#
# Bounded: loopback only, one wrk run of DURATION seconds (plus a 3 s warm-up); the folder is
# removed on exit (KEEP=1 keeps it). Not run by CI. Needs cmake, a C compiler, curl, wrk.
#
# Environment: BUILD (build folder, default build), N (100000), DIM (384), DURATION (30),
# CONNS (16), WRK_THREADS (number of cores, at most 4), QUERIES (100 bodies), SEED (1),
# SERVE_ARGS (extra `steward serve` flags for the measured server, e.g. "--threads 2").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${N:-100000}
DIM=${DIM:-384}
DURATION=${DURATION:-30}
CONNS=${CONNS:-16}
CORES=$(nproc)
WRK_THREADS=${WRK_THREADS:-$((CORES < 4 ? CORES : 4))}
QUERIES=${QUERIES:-100}
SEED=${SEED:-1}

say() { printf 'load: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in cmake cc curl wrk; do
  command -v $tool > /dev/null || die "$tool is not installed (scripts/install-deps.sh)"
done

# ---- build if needed ----------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  say "configuring $BUILD (Release)"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
say "building steward in $BUILD"
cmake --build "$BUILD" --target steward -j "$CORES" > /dev/null
STEWARD=$BUILD/steward
if grep -q '^STW_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
  say "note: $BUILD is a sanitizer build: the numbers show ASan/UBSan cost, not Steward's"
fi

# ---- a temporary folder, always cleaned up ------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/steward-load.XXXXXX")
SERVER=
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2> /dev/null; then
    kill "$SERVER" 2> /dev/null || true
    wait "$SERVER" 2> /dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts the server on a free loopback port; sets SERVER and S.
start_server() {
  : > "$WORK/serve.out"
  "$STEWARD" serve --data "$WORK/store" --listen 127.0.0.1:0 "$@" > "$WORK/serve.out" \
    2>> "$WORK/serve.log" &
  SERVER=$!
  for _ in $(seq 1 600); do
    grep -q '^listening' "$WORK/serve.out" 2> /dev/null && break
    kill -0 "$SERVER" 2> /dev/null || die "steward serve exited; see its log: $(tail -3 "$WORK/serve.log")"
    sleep 0.1
  done
  S=$(sed -n 's/^listening on //p' "$WORK/serve.out")
  [ -n "$S" ] || die "steward serve did not start"
}

# Stops the server; returns its exit status.
stop_server() {
  local rc=0
  kill -TERM "$SERVER"
  wait "$SERVER" || rc=$?
  SERVER=
  return $rc
}

# POST/DELETE as admin; fails unless the status is the expected one.
api() {
  local method=$1 path=$2 body=$3 want=$4 out status
  out=$(curl -s -w '\n%{http_code}' -X "$method" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $ADMIN" "$S$path" ${body:+-d "$body"})
  status=${out##*$'\n'}
  [ "$status" = "$want" ] || die "$method $path: $status ${out%$'\n'*}"
  printf '%s\n' "${out%$'\n'*}"
}

key_of() { sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p'; }

# ---- data ---------------------------------------------------------------------------------
t0=$(date +%s)
cc -O2 -std=c11 -o "$WORK/load_gen" "$ROOT/scripts/load_gen.c" -lm
say "generating $N chunks of dimension $DIM"
"$WORK/load_gen" chunks "$N" "$DIM" "$SEED" "$WORK/chunks.jsonl" "$WORK/vectors.f32"

"$STEWARD" init --data "$WORK/store" > "$WORK/init.json"
ADMIN=$(key_of < "$WORK/init.json")
start_server

api POST /v1/products '{"name":"notes","domain":"clinical","description":"load test",
  "contract":{"embedding_model":"synthetic-'"$DIM"'","dimension":'"$DIM"',"metric":"cosine",
  "compartments":["PSY","HIV","SUD"],"provenance_required":["source_system"]}}' 201 > /dev/null
declare -A KEYS
for p in rag-full rag-std rag-ops rag-res; do
  KEYS[$p]=$(api POST /v1/principals '{"id":"'$p'","roles":["consumer"]}' 201 | key_of)
done
api POST /v1/grants '{"principal":"rag-full","product":"notes","purposes":["TREAT"],
  "clearance":"V","compartments":["PSY","HIV","SUD"]}' 201 > /dev/null
api POST /v1/grants '{"principal":"rag-std","product":"notes","purposes":["TREAT"],
  "clearance":"N"}' 201 > /dev/null
api POST /v1/grants '{"principal":"rag-ops","domain":"clinical","purposes":["HOPERAT"],
  "clearance":"M"}' 201 > /dev/null
api POST /v1/grants '{"principal":"rag-res","product":"notes","purposes":["HRESCH"],
  "clearance":"N","compartments":["PSY"]}' 201 > /dev/null

say "ingesting and publishing (builds the HNSW graph)"
t1=$(date +%s)
"$STEWARD" ingest --data "$WORK/store" --product notes --version v1 --vectors "$WORK/vectors.f32" \
  --batch 5000 --publish "$WORK/chunks.jsonl" > "$WORK/ingest.json" 2> "$WORK/ingest.log" \
  || die "ingest failed: $(tail -3 "$WORK/ingest.log")"
t2=$(date +%s)
say "ingest+publish: $((t2 - t1)) s: $(cat "$WORK/ingest.json")"
rm -f "$WORK/chunks.jsonl"

"$WORK/load_gen" queries "$QUERIES" "$DIM" "$SEED" "$WORK/vectors.f32" "$N" "$WORK/bodies.tsv" \
  "${KEYS[rag-full]}=TREAT" "${KEYS[rag-std]}=TREAT" "${KEYS[rag-ops]}=HOPERAT" \
  "${KEYS[rag-res]}=HRESCH"
rm -f "$WORK/vectors.f32"

# A fresh server for the measurement: nothing from the setup stays in its memory.
stop_server || die "the setup server did not stop cleanly"
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
start_server ${SERVE_ARGS:-}
# Every principal's first body must be answered, or we would measure refusals.
head -4 "$WORK/bodies.tsv" | while IFS=$'\t' read -r key body; do
  status=$(curl -s -o "$WORK/check.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $key" "$S/v1/query" -d "$body")
  [ "$status" = 200 ] || die "a check query got $status: $(head -c 300 "$WORK/check.json")"
  grep -q '"rank":1' "$WORK/check.json" || die "a check query returned no results"
done
say "setup done in $(($(date +%s) - t0)) s"

# ---- the run ------------------------------------------------------------------------------
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
say "warm-up: 3 s"
wrk -t "$WRK_THREADS" -c "$CONNS" -d 3s --timeout 10s -s "$ROOT/scripts/load.lua" "$S" \
  -- "$WORK/bodies.tsv" > /dev/null

model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
c0=$(cpu_ticks)
say "running wrk: $DURATION s, $CONNS connections, $WRK_THREADS threads, $QUERIES bodies"
wrk -t "$WRK_THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s -s "$ROOT/scripts/load.lua" \
  "$S" -- "$WORK/bodies.tsv" | tee "$WORK/wrk.out" >&2
c1=$(cpu_ticks)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

server_rc=0
stop_server || server_rc=$?
sanitizer=$(grep -c -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$WORK/serve.log" || true)

line=$(grep '^load: ' "$WORK/wrk.out") || die "wrk printed no summary"
val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$line"; }
duration_us=$(val duration_us)
n2xx=$(val n2xx)
n5xx=$(val n5xx)
errors=$(($(val n4xx) + n5xx + $(val nother) + $(val socket_errors) + $(val timeouts)))
qps=$(awk -v n="$n2xx" -v d="$duration_us" 'BEGIN { printf "%d", n / (d / 1e6) }')
p99_ms=$(awk -v u="$(val p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
p50_ms=$(awk -v u="$(val p50_us)" 'BEGIN { printf "%.2f", u / 1000 }')
server_cpu=$(awk -v t=$((c1 - c0)) -v hz="$ticks" -v d="$duration_us" \
  'BEGIN { printf "%.2f", t / hz / (d / 1e6) }')

echo "machine: $CORES cores ($model), load average before $load_before, after $load_after"
echo "server: $server_cpu cores busy on average during the run; exit $server_rc;" \
  "sanitizer reports: $sanitizer"
echo "data: $N chunks, d=$DIM, cosine, 4 principals; k=10; p50_ms=$p50_ms; 5xx=$n5xx"
echo "bench: http_qps=$qps p99_ms=$p99_ms errors=$errors"
[ "$n5xx" = 0 ] && [ "$server_rc" = 0 ] && [ "$sanitizer" = 0 ]
