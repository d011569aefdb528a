#!/usr/bin/env bash
# bench/bench_query.sh — the query benchmark (kcqrs-query), standalone:
#
#   1. query.noop      bench_http_kqnoop's no-op GET /api/v1/resources/{id}
#                      (lib/kq_http: route, reader-key check, a fixed
#                      resource-sized answer) under wrk -t1 -c64 with
#                      bench/wrk_query_get.lua: the HTTP ceiling;
#   2. query.get       kcqrs-query serving GET /api/v1/resources/{id} from an
#                      LMDB read model of BENCH_QUERY_IDS resources
#                      (tests/tools/qry_bench fill) under the same wrk load
#                      (bench/wrk_query_get.lua): reads/s and its ratio to 1
#                      (target >= 80%);
#   2b. query.get.log_info, .log_info_unbuffered: the same with the access log
#                      at info (one line per request), buffered (default) and
#                      one write(2) per line (KCQRS_LOG_FLUSH_MS=0), beside 2;
#   3. query.get_rate  qry_bench get at half of this run's query.get rate,
#                      open loop, 64 connections: p50/p99 (target p99 <= 2 ms);
#   4. query.visible_lag  (needs Kafka and PostgreSQL: skipped unless
#                      KCQRS_BROKERS and KCQRS_PG_DSN are set, e.g. by
#                      `make up`) kcqrs-commands + kcqrs-projector +
#                      kcqrs-query on fresh topics: qry_bench lag posts
#                      BENCH_QUERY_LAG_RATE creates/s (default 1000) and reads
#                      each back with its consistency token: p50/p99 from the
#                      201 to the read's 200 (query.visible_lag) and from the
#                      create's due time (query.write_to_read: grows without
#                      bound when the command side cannot keep up).
# Servers on CPU 0, load generators on the last CPU (taskset, when there are
# two). Prints RESULT lines (bench/run.sh protocol); logs in $BUILD/bench/logs.
#
# Environment: BUILD (build), BENCH_QUERY_SECS (10), BENCH_QUERY_IDS (10000),
# BENCH_QUERY_LAG_RATE (1000), BENCH_QUERY_LAG_SECS (10), BENCH_QUERY_LAG_CONNS (256:
# each slot holds a create and then its read, so it needs more than 64 to keep
# up with 1000/s when commits take tens of ms).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
SECS=${BENCH_QUERY_SECS:-10}
IDS=${BENCH_QUERY_IDS:-10000}
LAG_RATE=${BENCH_QUERY_LAG_RATE:-1000}
LAG_SECS=${BENCH_QUERY_LAG_SECS:-10}
LAG_CONNS=${BENCH_QUERY_LAG_CONNS:-256}
LOGS=$BUILD/bench/logs
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kcqrs-bench-query.XXXXXX")
PIDS=()
mkdir -p "$LOGS"

cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench_query: $*" >&2; exit 1; }

NCPU=$(nproc 2>/dev/null || echo 1)
PIN_SERVER=() PIN_CLIENT=()
if [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c "$((NCPU - 1))")
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # URL SECONDS
    local i
    for i in $(seq $(($2 * 10))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
# wrk_run NAME URL SCRIPT: prints "<req/s> <p50_ms> <p99_ms>"; fails on any error
wrk_run() {
    local name=$1 url=$2 script=$3 log="$LOGS/query.$1.log" line
    "${PIN_CLIENT[@]}" wrk -t1 -c64 -d"${SECS}s" --latency -s "$script" "$url" >"$log" 2>&1 ||
        die "wrk failed ($name, see $log)"
    line=$(grep '^WRK ' "$log") || die "no summary from wrk ($name, see $log)"
    python3 - "$line" <<'PY' || die "$name rejected (see $log)"
import sys
kv = dict(f.split("=", 1) for f in sys.argv[1].split()[1:])
bad = int(kv.get("non200", kv.get("non201", "0")))
if int(kv["errors"]) or bad or int(kv["requests"]) == 0:
    sys.exit(f"wrk: {kv['errors']} socket errors, {bad} wrong answers (first {kv['first_status']})")
print(f"{int(kv['requests']) / (int(kv['duration_us']) / 1e6):.1f} "
      f"{int(kv['p50_us']) / 1000:.3f} {int(kv['p99_us']) / 1000:.3f}")
PY
}

KEYS=$TMP/keys
RKEY=$("$BUILD/bin/kcqrs-keys" create --name bench-reader --roles reader --file "$KEYS")
WKEY=$("$BUILD/bin/kcqrs-keys" create --name bench-writer --roles writer --file "$KEYS")
export KCQRS_KEYS_FILE=$KEYS KCQRS_LOG_LEVEL=${KCQRS_LOG_LEVEL:-warn}
export KCQRS_KEK_FILE=$TMP/kek
"$BUILD/bin/kcqrs-keys" kek-add --file "$TMP/kek" >/dev/null || die "cannot create a KEK file"

# 1. the kq_http ceiling
port=$(free_port)
KCQRS_COMMANDS_ADDR=127.0.0.1:$port "${PIN_SERVER[@]}" "$BUILD/bench/bench_http_kqnoop" \
    >"$LOGS/query.noop.server.log" 2>&1 &
PIDS+=($!)
kq_noop=${PIDS[-1]}
sleep 0.5
read -r noop_rate noop_p50 noop_p99 < <(BENCH_IDS=$IDS BENCH_KEY=$RKEY wrk_run noop \
    "http://127.0.0.1:$port/" bench/wrk_query_get.lua)
kill -TERM "$kq_noop"; wait "$kq_noop" 2>/dev/null || true
echo "RESULT name=query.noop unit=req/s value=$noop_rate p50_ms=$noop_p50 p99_ms=$noop_p99"

# 2. GET by id from LMDB
mkdir -p "$TMP/lmdb"
"$BUILD/tests/tools/qry_bench" fill "$TMP/lmdb/readmodel" "$IDS" || die "fill failed"
port=$(free_port)
KCQRS_QUERY_ADDR=127.0.0.1:$port KCQRS_LMDB_DIR=$TMP/lmdb KCQRS_BROKERS=127.0.0.1:1 \
    KCQRS_PG_DSN=postgresql://nobody@127.0.0.1:1/none KCQRS_LOG_LEVEL=error \
    "${PIN_SERVER[@]}" "$BUILD/bin/kcqrs-query" >"$LOGS/query.server.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$port/health" 10 || die "kcqrs-query did not start"
curl -sf -H "Authorization: Bearer $RKEY" "http://127.0.0.1:$port/api/v1/resources/b-000001" \
    >/dev/null || die "kcqrs-query does not serve the fixture"
read -r get_rate get_p50 get_p99 < <(BENCH_IDS=$IDS BENCH_KEY=$RKEY wrk_run get \
    "http://127.0.0.1:$port/" bench/wrk_query_get.lua)
echo "RESULT name=query.get unit=req/s value=$get_rate baseline=query.noop target=>=0.8x p50_ms=$get_p50 p99_ms=$get_p99"

# 2b. the same GET load with the access log at info (one line per request):
# buffered (the default KCQRS_LOG_FLUSH_MS) and one write(2) per line
# (KCQRS_LOG_FLUSH_MS=0); baseline: query.get above (log level error).
for mode in info:100 info_unbuffered:0; do
    lport=$(free_port)
    KCQRS_QUERY_ADDR=127.0.0.1:$lport KCQRS_LMDB_DIR=$TMP/lmdb KCQRS_BROKERS=127.0.0.1:1 \
        KCQRS_PG_DSN=postgresql://nobody@127.0.0.1:1/none KCQRS_LOG_LEVEL=info \
        KCQRS_LOG_FLUSH_MS=${mode#*:} "${PIN_SERVER[@]}" "$BUILD/bin/kcqrs-query" \
        >"$TMP/query.log.out" 2>&1 &
    lpid=$!
    wait_http "http://127.0.0.1:$lport/health" 10 || die "kcqrs-query (log ${mode%%:*}) did not start"
    read -r lrate lp50 lp99 < <(BENCH_IDS=$IDS BENCH_KEY=$RKEY wrk_run "log_${mode%%:*}" \
        "http://127.0.0.1:$lport/" bench/wrk_query_get.lua)
    kill -TERM "$lpid"
    wait "$lpid" 2>/dev/null || true
    echo "RESULT name=query.get.log_${mode%%:*} unit=req/s value=$lrate baseline=query.get p50_ms=$lp50 p99_ms=$lp99 access_lines=$(grep -c ' http GET ' "$TMP/query.log.out" || true)"
done
rm -f "$TMP/query.log.out"

# 3. fixed rate at half the maximum
half=$(python3 -c "print(int($get_rate / 2))")
"${PIN_CLIENT[@]}" "$BUILD/tests/tools/qry_bench" get --url "http://127.0.0.1:$port" --key "$RKEY" \
    --ids "$IDS" --rate "$half" --seconds "$SECS" --connections 64 2>"$LOGS/query.rate.log" |
    sed 's/^RESULT name=query.get_rate/RESULT name=query.get_rate/' || die "qry_bench get failed (see $LOGS/query.rate.log)"

# 4. command-to-visible lag through the whole chain
if [ -z "${KCQRS_BROKERS:-}" ] || [ -z "${KCQRS_PG_DSN:-}" ]; then
    echo "bench_query: KCQRS_BROKERS/KCQRS_PG_DSN not set: skipping query.visible_lag" >&2
    exit 0
fi
export KCQRS_TOPIC_PREFIX="bench.q$(date +%s)"
export KCQRS_HTTP_MAX_PER_IP=0 # the load generator is one client IP with LAG_CONNS connections
cport=$(free_port) qport=$(free_port)
mkdir -p "$TMP/cmd" "$TMP/read"
KCQRS_COMMANDS_ADDR=127.0.0.1:$cport KCQRS_COMMANDS_INTERNAL_ADDR=127.0.0.1:$(free_port) \
    KCQRS_LMDB_DIR=$TMP/cmd "$BUILD/bin/kcqrs-commands" \
    >"$LOGS/query.lag.commands.log" 2>&1 &
PIDS+=($!)
KCQRS_PROJECTOR_ADDR=127.0.0.1:$(free_port) KCQRS_LMDB_DIR=$TMP/read "$BUILD/bin/kcqrs-projector" \
    >"$LOGS/query.lag.projector.log" 2>&1 &
PIDS+=($!)
KCQRS_QUERY_ADDR=127.0.0.1:$qport KCQRS_LMDB_DIR=$TMP/read "$BUILD/bin/kcqrs-query" \
    >"$LOGS/query.lag.query.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$cport/ready" 60 || die "kcqrs-commands not ready"
wait_http "http://127.0.0.1:$qport/ready" 60 || die "kcqrs-query not ready (see $LOGS/query.lag.query.log)"
"$BUILD/tests/tools/qry_bench" lag --cmd "http://127.0.0.1:$cport" --url "http://127.0.0.1:$qport" \
    --wkey "$WKEY" --key "$RKEY" --rate "$LAG_RATE" --seconds "$LAG_SECS" --connections "$LAG_CONNS" \
    --tag "lag$$" 2>"$LOGS/query.lag.log" || die "qry_bench lag failed (see $LOGS/query.lag.log)"
curl -s "http://127.0.0.1:$qport/metrics" | grep '^kcqrs_query_wait' >>"$LOGS/query.lag.log" || true
