#!/usr/bin/env bash
# bench/run.sh — run every benchmark N times, print one table of medians and
# ratios to the baselines measured in the same run, and write it as Markdown
# to $BUILD/bench/results.md. Called by `make bench` (see bench/README.md).
#
# Environment:
#   BUILD=build          where the bench programs were built ($BUILD/bench/*)
#   BENCH_RUNS=N         measured runs per benchmark (default 5; 3 when quick)
#   BENCH_QUICK=1        CI-sized run: shorter durations, fewer messages
#   BENCH_ONLY=a,b       subset of: codec, http, worker, kafka, commands, stack, projector, query, replay, pg
#                        (default: all but pg; pg: the PostgreSQL projector write paths
#                        compared, bench_pg_apply; replay: kcqrs-replay rebuild times beside
#                        a raw consumer, bench_replay.sh). projector, query, replay and pg use
#                        a private PostgreSQL started with ops/pg.sh (fsync on)
#   BENCH_COMMANDS_RUNS=N  measured runs of the commands phase (default 3, as issue #3 asks)
#   BENCH_SERVICE_RUNS=N   measured runs of the worker-service, projector, query and replay
#                        phases (default 3)
#   BENCH_STRICT=1       also exit non-zero when a median misses its target
#   KCQRS_BROKERS=h:p    use this Kafka instead of starting one with ops/kafka.sh
#
# Protocol: each program prints lines
#   RESULT name=<id> unit=<unit> value=<number> [baseline=<id>] [target=<op><number>] [k=v ...]
# Everything else it prints goes to $BUILD/bench/logs/. A program that exits
# non-zero, or prints no RESULT, fails the whole run (exit 1) after its log
# tail is shown. The CPU-bound entries (codec, http) run first, interleaved
# (run 1 of each, then run 2, ...) so slow drift of the machine spreads over
# all of them; then the broker is started and the Kafka runs follow, then the
# command service (kcqrs-commands) with its two baselines (bench_commands).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
BENCH_QUICK=${BENCH_QUICK:-0}
if [ "$BENCH_QUICK" = 1 ]; then
    BENCH_RUNS=${BENCH_RUNS:-3}
else
    BENCH_RUNS=${BENCH_RUNS:-5}
fi
BENCH_ONLY=${BENCH_ONLY:-codec,http,worker,kafka,commands,stack,projector,query,replay}
BENCH_STRICT=${BENCH_STRICT:-0}
case "$BENCH_RUNS" in '' | *[!0-9]* | 0) echo "bench: BENCH_RUNS must be a positive integer" >&2; exit 2 ;; esac

BDIR=$BUILD/bench
LOGS=$BDIR/logs
RAW=$BDIR/raw.txt
TABLE_MD=$BDIR/results.md
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kcqrs-bench.XXXXXX")
KAFKA_DATA=
PG_DATA=
start_s=$(date +%s)
load_start=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')

cleanup() {
    local rc=$?
    if [ -n "${HTTP_PID:-}" ]; then kill "$HTTP_PID" 2>/dev/null || true; wait "$HTTP_PID" 2>/dev/null || true; fi
    if [ -n "${CMD_PID:-}" ]; then kill -TERM "$CMD_PID" 2>/dev/null || true; wait "$CMD_PID" 2>/dev/null || true; fi
    if [ -n "$KAFKA_DATA" ]; then
        echo "bench: stopping the benchmark broker" >&2
        ops/kafka.sh stop "$KAFKA_DATA" >>"$LOGS/kafka-broker.log" 2>&1 || echo "bench: ops/kafka.sh stop failed (see $LOGS/kafka-broker.log)" >&2
        cp "$KAFKA_DATA/kafka.log" "$LOGS/kafka-server.log" 2>/dev/null || true
    fi
    if [ -n "$PG_DATA" ]; then
        echo "bench: stopping the benchmark PostgreSQL" >&2
        ops/pg.sh stop "$PG_DATA" >>"$LOGS/pg-server.log" 2>&1 || echo "bench: ops/pg.sh stop failed (see $LOGS/pg-server.log)" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want() { case ",$BENCH_ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
die() { echo "bench: $*" >&2; exit 1; }

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log
: >"$RAW"

command -v python3 >/dev/null || die "python3 is needed to compute the table"

# ------------------------------------------------------------------ CPU pinning
# Single-core benchmarks run pinned, on the last CPU. The HTTP server gets CPU 0
# and wrk the last CPU, so they do not compete for one core.
NCPU=$(nproc 2>/dev/null || echo 1)
LAST_CPU=$((NCPU - 1))
PIN_ONE=() PIN_SERVER=() PIN_CLIENT=()
if command -v taskset >/dev/null && taskset -c 0 true 2>/dev/null; then
    PIN_ONE=(taskset -c "$LAST_CPU")
    if [ "$NCPU" -ge 2 ]; then
        PIN_SERVER=(taskset -c 0)
        PIN_CLIENT=(taskset -c "$LAST_CPU")
    fi
    PINNING="codec on CPU $LAST_CPU; http server on CPU 0, wrk on CPU $LAST_CPU"
    [ "$NCPU" -ge 2 ] || PINNING="codec on CPU 0; http unpinned (one CPU)"
else
    PINNING="none (taskset unavailable)"
fi

# ------------------------------------------------------------------ sizes
if [ "$BENCH_QUICK" = 1 ]; then
    CODEC_ARGS=(--min-time-ms 200)
    HTTP_SECS=2
    KAFKA_ARGS=(--messages 50000 --lat-messages 3000 --txn-messages 3000)
else
    CODEC_ARGS=(--min-time-ms 1000)
    HTTP_SECS=5
    KAFKA_ARGS=(--messages 200000 --lat-messages 20000 --txn-messages 20000)
fi
HTTP_CONNS=32
# commands phase (issue #3): wrk 64 connections, 30 s, median of 3 runs
if [ "$BENCH_QUICK" = 1 ]; then
    CMD_SECS=5 CMD_RATE_SECS=5 CMD_RAW_SECS=5 CMD_WARM_SECS=5 CMD_SVC_WARM_SECS=1
else
    CMD_SECS=30 CMD_RATE_SECS=20 CMD_RAW_SECS=15 CMD_WARM_SECS=15 CMD_SVC_WARM_SECS=3
fi
CMD_RUNS=${BENCH_COMMANDS_RUNS:-3}
case "$CMD_RUNS" in '' | *[!0-9]* | 0) echo "bench: BENCH_COMMANDS_RUNS must be a positive integer" >&2; exit 2 ;; esac
CMD_CONNS=64
# projector and query phases (issue #4): medians of 3 runs like the command phase
SVC_RUNS=${BENCH_SERVICE_RUNS:-3}
case "$SVC_RUNS" in '' | *[!0-9]* | 0) echo "bench: BENCH_SERVICE_RUNS must be a positive integer" >&2; exit 2 ;; esac
KAFKA_WARMUP_ARGS=(--messages 20000 --lat-messages 500 --txn-messages 1000)

# ------------------------------------------------------------------ interference
# CPU time used by other processes while we measure, from /proc (clock ticks):
# all busy time of the machine minus what our waited-for children (the
# benchmarks, wrk) and our own broker used. Printed per phase and in the table
# footer, because on a 2-core machine a colleague's build moves every number.
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
cpu_ours() {
    local t b=0
    # fields 16, 17 of /proc/PID/stat: cutime, cstime (after the ")" of comm)
    t=$(sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }')
    if [ -n "$KAFKA_DATA" ] && [ -f "$KAFKA_DATA/kafka.pid" ]; then
        b=$(sed 's/.*) //' "/proc/$(cat "$KAFKA_DATA/kafka.pid")/stat" 2>/dev/null | awk '{ print $12 + $13 }')
    fi
    echo $((t + ${b:-0}))
}
phase_start() { P_BUSY=$(cpu_busy) P_OURS=$(cpu_ours) P_T0=$(date +%s.%N); }
# phase_end NAME: append "NAME: N% of the CPUs used by other processes" to $FOREIGN.
phase_end() {
    local pct
    pct=$(awk -v b0="$P_BUSY" -v b1="$(cpu_busy)" -v o0="$P_OURS" -v o1="$(cpu_ours)" \
        -v t0="$P_T0" -v t1="$(date +%s.%N)" -v n="$NCPU" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { f = ((b1 - b0) - (o1 - o0)) / hz / ((t1 - t0) * n) * 100; if (f < 0) f = 0; printf "%.0f", f }')
    echo "bench: during $1, other processes used ${pct}% of the CPUs" >&2
    FOREIGN="${FOREIGN:+$FOREIGN, }$1 ${pct}%"
}
FOREIGN=

need_bin() { [ -x "$BDIR/$1" ] || die "$BDIR/$1 is missing: build it with 'make $BDIR/$1' (make bench does)"; }

# run_prog NAME RUN CMD... : run one program, keep its output in the log, add
# its RESULT lines (tagged with the run number) to $RAW.
run_prog() {
    local name=$1 run=$2 log rc=0
    shift 2
    log="$LOGS/$name.$run.log"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: $name (run $run) failed with exit status $rc; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    grep -q '^RESULT ' "$log" || die "$name (run $run) printed no RESULT line (see $log)"
    [ "$run" = warmup ] || sed -n "s/^RESULT /run=$run /p" "$log" >>"$RAW"
}

# ------------------------------------------------------------------ codec
bench_codec() {
    run_prog codec "$1" "${PIN_ONE[@]}" "$BDIR/bench_codec" "${CODEC_ARGS[@]}"
}

# ------------------------------------------------------------------ worker
# The worker's action engine beside plain libcurl multi, same signed POSTs to
# the same in-process receiver (issue #6's baseline); one run per call.
bench_worker() {
    run_prog worker "$1" "$BDIR/bench_worker" --runs 1
}

# ------------------------------------------------------------------ http
# wrk's Lua done() hook prints exact numbers (latency in microseconds); the
# human report (--latency) stays in the log.
cat >"$TMP/wrk_report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
EOF

bench_http() {
    local run=$1 secs=${2:-$HTTP_SECS} log port="" i rc=0 wrk_line
    log="$LOGS/http.$run.log"
    rm -f "$TMP/http.port"
    "${PIN_SERVER[@]}" "$BDIR/bench_http_noop" --port-file "$TMP/http.port" >"$TMP/http.server" 2>&1 &
    HTTP_PID=$!
    for i in $(seq 100); do
        [ -s "$TMP/http.port" ] && break
        kill -0 "$HTTP_PID" 2>/dev/null || break
        sleep 0.05
    done
    port=$(cat "$TMP/http.port" 2>/dev/null || true)
    if [ -z "$port" ]; then
        cat "$TMP/http.server" >&2
        die "bench_http_noop did not start"
    fi
    "${PIN_CLIENT[@]}" wrk -t1 -c"$HTTP_CONNS" -d"${secs}s" --latency -s "$TMP/wrk_report.lua" \
        "http://127.0.0.1:$port/" >"$log" 2>&1 || rc=$?
    kill -TERM "$HTTP_PID"
    wait "$HTTP_PID" || die "bench_http_noop exited with status $? (run $run)"
    HTTP_PID=
    cat "$TMP/http.server" >>"$log"
    if [ "$rc" -ne 0 ]; then
        tail -n 20 "$log" >&2
        die "wrk failed with exit status $rc (run $run)"
    fi
    wrk_line=$(grep '^WRK ' "$log") || die "no summary from wrk (run $run, see $log)"
    python3 - "$run" "$wrk_line" "$(grep '^RESULT name=http.noop.server_requests' "$log" || true)" \
        "$HTTP_CONNS" "$secs" >>"$TMP/http.results" <<'PY' || die "http run $run rejected (see $log)"
import sys
run, line, server, conns, secs = sys.argv[1:6]
kv = dict(f.split("=", 1) for f in line.split()[1:])
req, dur = int(kv["requests"]), int(kv["duration_us"])
served = int(server.rsplit("=", 1)[1]) if server else -1
if int(kv["errors"]) or int(kv["status_errors"]):
    sys.exit(f"wrk saw {kv['errors']} socket errors and {kv['status_errors']} non-2xx answers")
if req == 0 or served < req:
    sys.exit(f"wrk counted {req} requests but the server answered {served}")
extra = f"connections={conns} seconds={secs}"
print(f"run={run} name=http.noop unit=req/s value={req / (dur / 1e6):.1f} {extra}")
print(f"run={run} name=http.noop.p50 unit=ms value={int(kv['p50_us']) / 1000:.3f}")
print(f"run={run} name=http.noop.p99 unit=ms value={int(kv['p99_us']) / 1000:.3f}")
PY
    if [ "$run" != warmup ]; then cat "$TMP/http.results" >>"$RAW"; fi
    rm -f "$TMP/http.results"
}

# ------------------------------------------------------------------ kafka
free_ports() {
    python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))'
}

start_kafka() {
    [ -z "${BROKERS:-}" ] || return 0
    if [ -n "${KCQRS_BROKERS:-}" ]; then
        BROKERS=$KCQRS_BROKERS
        echo "bench: using Kafka at $BROKERS (KCQRS_BROKERS)" >&2
        return
    fi
    [ -x ops/kafka.sh ] || die "ops/kafka.sh not found: set KCQRS_BROKERS, or BENCH_ONLY=codec,http"
    local ports
    read -r -a ports <<<"$(free_ports)"
    KAFKA_DATA="$TMP/kafka"
    mkdir -p "$KAFKA_DATA"
    echo "bench: starting a Kafka broker on 127.0.0.1:${ports[0]} (controller ${ports[1]}) in $KAFKA_DATA" >&2
    KCQRS_TOOLS="$PWD/$BUILD/tests/tools" ops/kafka.sh start "$KAFKA_DATA" "${ports[0]}" "${ports[1]}" \
        >"$LOGS/kafka-broker.log" 2>&1 ||
        { tail -n 30 "$LOGS/kafka-broker.log" >&2; die "ops/kafka.sh start failed"; }
    BROKERS="127.0.0.1:${ports[0]}"
}

bench_kafka() {
    local run=$1
    shift
    run_prog kafka "$run" "$BDIR/bench_kafka" --brokers "$BROKERS" "$@"
}

# ------------------------------------------------------------------ commands
# bench_commands RUN: kcqrs-commands and its two baselines (issue #3).
# shellcheck source=bench/bench_commands.sh
. bench/bench_commands.sh

# ------------------------------------------------------------------ main
benches=()
want codec && { need_bin bench_codec; benches+=(codec); }
want http && { need_bin bench_http_noop; command -v wrk >/dev/null || die "wrk is not installed"; benches+=(http); }
if want worker; then
    need_bin bench_worker
    for b in kcqrs-worker kcqrs-commands kcqrs-keys kcqrs-audit; do
        [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing (make bench builds it)"
    done
    [ -x "$BUILD/tests/tools/kq_receiver" ] || die "$BUILD/tests/tools/kq_receiver is missing (make builds it)"
    benches+=(worker)
fi
want kafka && { need_bin bench_kafka; benches+=(kafka); }
if want commands; then
    for b in bench_http_kqnoop bench_txn_envelopes bench_rate; do need_bin "$b"; done
    for b in kcqrs-commands kcqrs-keys; do
        [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing: build it with 'make $BUILD/bin/$b' (make bench does)"
    done
    command -v wrk >/dev/null || die "wrk is not installed"
    command -v curl >/dev/null || die "curl is not installed"
    benches+=(commands)
fi
if want stack; then
    for b in bench_rate; do need_bin "$b"; done
    for b in kcqrs-commands kcqrs-projector kcqrs-query kcqrs-worker kcqrs-keys kcqrs-replay; do
        [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing (make bench builds it)"
    done
    [ -x "$BUILD/tests/tools/qry_bench" ] || die "$BUILD/tests/tools/qry_bench is missing (make builds it)"
    command -v wrk >/dev/null || die "wrk is not installed"
    benches+=(stack)
fi
want pg && { need_bin bench_pg_apply; benches+=(pg); }
if want projector; then
    need_bin bench_consume
    [ -x "$BUILD/bin/kcqrs-projector" ] || die "$BUILD/bin/kcqrs-projector is missing (make bench builds it)"
    benches+=(projector)
fi
if want query; then
    need_bin bench_http_kqnoop
    [ -x "$BUILD/bin/kcqrs-query" ] || die "$BUILD/bin/kcqrs-query is missing (make bench builds it)"
    command -v wrk >/dev/null || die "wrk is not installed"
    benches+=(query)
fi
if want replay; then
    need_bin bench_consume
    for b in kcqrs-replay kcqrs-projector; do
        [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing (make bench builds it)"
    done
    benches+=(replay)
fi
[ "${#benches[@]}" -gt 0 ] || die "BENCH_ONLY='$BENCH_ONLY' selects nothing (codec, http, worker, kafka, commands, stack, projector, query, replay, pg)"

echo "bench: ${benches[*]}; $BENCH_RUNS runs each$(want commands && echo " ($CMD_RUNS for commands)")$([ "$BENCH_QUICK" = 1 ] && echo ' (quick)'); pinning: $PINNING" >&2
if awk -v l="$load_start" -v n="$NCPU" 'BEGIN { exit !(l + 0 > 0.25 * n) }'; then
    echo "bench: warning: load average is $load_start on $NCPU CPUs before we start; other work will make the numbers noisy (see the spread column)" >&2
fi
# Phase 1: the CPU-bound entries, interleaved, with no broker running (an idle
# JVM broker still collects garbage and cleans logs, on the same two cores).
if want http; then
    echo "bench: http warm-up" >&2
    bench_http warmup 1
fi
phase_start
for run in $(seq "$BENCH_RUNS"); do
    for b in "${benches[@]}"; do
        case $b in
        codec) echo "bench: run $run/$BENCH_RUNS: codec" >&2; bench_codec "$run" ;;
        http) echo "bench: run $run/$BENCH_RUNS: http" >&2; bench_http "$run" ;;
        worker) echo "bench: run $run/$BENCH_RUNS: worker" >&2; bench_worker "$run" ;;
        esac
    done
done
{ want codec || want http || want worker; } && phase_end "cpu-bound ($(for b in codec http worker; do want $b && printf '%s ' $b; done | sed 's/ $//'))"

# Phase 2: Kafka, on a broker started only now.
if want kafka; then
    start_kafka
    # A fresh JVM broker needs warming (JIT, transaction coordinator loading):
    # one unmeasured pass.
    echo "bench: kafka warm-up" >&2
    bench_kafka warmup "${KAFKA_WARMUP_ARGS[@]}"
    phase_start
    for run in $(seq "$BENCH_RUNS"); do
        echo "bench: run $run/$BENCH_RUNS: kafka" >&2
        bench_kafka "$run" "${KAFKA_ARGS[@]}"
    done
    phase_end kafka
fi

# Phase 3: the command service and its baselines, on the same broker. The
# warm-up pass also warms the broker when the kafka phase did not run.
if want commands; then
    start_kafka
    echo "bench: commands warm-up" >&2
    bench_commands warmup "$CMD_WARM_SECS"
    phase_start
    for run in $(seq "$CMD_RUNS"); do
        echo "bench: run $run/$CMD_RUNS: commands" >&2
        bench_commands "$run"
    done
    phase_end commands
fi

# Phase 3b: the worker service (issue #6): runs/s of kcqrs-worker through a
# one-step HTTP workflow (runs triggered beforehand; timed from the worker's
# start until every run is recorded as succeeded) beside libcurl alone sending
# as many requests to the same receiver (bench_worker_runs.sh).
if want worker; then
    start_kafka
    phase_start
    for run in $(seq "$SVC_RUNS"); do
        echo "bench: run $run/$SVC_RUNS: worker runs" >&2
        KCQRS_BROKERS="$BROKERS" BUILD="$BUILD" BENCH_QUICK="$BENCH_QUICK" \
            run_prog worker_runs "$run" bench/bench_worker_runs.sh
        sed -i -E "s/^run=$run name=worker\.(runs|trigger)/run=$run of=$SVC_RUNS name=worker.\1/" "$RAW"
    done
    phase_end worker-runs
fi

# start_pg: a private PostgreSQL (fsync on) for the phases that need one, once.
start_pg() {
    [ -z "${PG_PORT:-}" ] || return 0
    PG_PORT=$(free_ports | cut -d' ' -f1)
    PG_DATA="$TMP/pg"
    echo "bench: starting PostgreSQL on 127.0.0.1:$PG_PORT in $PG_DATA" >&2
    ops/pg.sh start "$PG_DATA" "$PG_PORT" >"$LOGS/pg-server.log" 2>&1 ||
        { tail -n 30 "$LOGS/pg-server.log" >&2; die "ops/pg.sh start failed"; }
}

# Phase 3c: the whole stack `make up` runs (issue #15): commands, projector (both
# targets), query and worker on one broker and one PostgreSQL, beside the
# command service alone in the same run (bench_stack.sh; the order of the two
# alternates between runs).
if want stack; then
    start_kafka
    start_pg
    echo "bench: stack warm-up" >&2
    stack_env=(KCQRS_BROKERS="$BROKERS" BENCH_PG_ADMIN_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
        BUILD="$BUILD" BENCH_QUICK="$BENCH_QUICK" BENCH_PG_DATA="$PG_DATA"
        BENCH_KAFKA_PID="$([ -n "$KAFKA_DATA" ] && cat "$KAFKA_DATA/kafka.pid" 2>/dev/null || true)")
    run_prog stack warmup env "${stack_env[@]}" BENCH_STACK_RUN=1 BENCH_STACK_CONNS=64 \
        BENCH_STACK_SECS=3 BENCH_STACK_LAG_SECS=2 bench/bench_stack.sh
    phase_start
    for run in $(seq "$SVC_RUNS"); do
        echo "bench: run $run/$SVC_RUNS: stack" >&2
        run_prog stack "$run" env "${stack_env[@]}" BENCH_STACK_RUN="$run" bench/bench_stack.sh
        sed -i "s/^run=$run name=stack\./run=$run of=$SVC_RUNS name=stack./" "$RAW"
    done
    phase_end stack
fi

# Phase 4: the projector's replay from offset 0 into LMDB and into PostgreSQL
# beside a raw read_committed consumer of the same topics (bench_projector.sh
# loads BENCH_PROJ_EVENTS events under a fresh prefix each run).
if want projector; then
    start_kafka
    start_pg
    phase_start
    for run in $(seq "$SVC_RUNS"); do
        echo "bench: run $run/$SVC_RUNS: projector" >&2
        KCQRS_BROKERS="$BROKERS" BENCH_PG_ADMIN_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres" \
            BUILD="$BUILD" BENCH_QUICK="$BENCH_QUICK" run_prog projector "$run" bench/bench_projector.sh
        sed -i "s/^run=$run name=projector\./run=$run of=$SVC_RUNS name=projector./" "$RAW"
    done
    phase_end projector
fi

# Phase 5: the query API (GET by id beside a no-op GET on kq_http, fixed-rate
# p99) and the command-to-visible lag through commands, projector and query.
if want query; then
    start_kafka
    start_pg
    qdb="bench_query_$$"
    psql -X -q -v ON_ERROR_STOP=1 -d "postgresql://postgres@127.0.0.1:$PG_PORT/postgres" \
        -c "CREATE DATABASE $qdb OWNER kcqrs" >/dev/null || die "cannot create database $qdb"
    phase_start
    for run in $(seq "$SVC_RUNS"); do
        echo "bench: run $run/$SVC_RUNS: query" >&2
        KCQRS_BROKERS="$BROKERS" KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$PG_PORT/$qdb" \
            BUILD="$BUILD" BENCH_QUERY_SECS="$([ "$BENCH_QUICK" = 1 ] && echo 3 || echo 10)" \
            run_prog query "$run" bench/bench_query.sh
        sed -i "s/^run=$run name=query\./run=$run of=$SVC_RUNS name=query./" "$RAW"
    done
    phase_end query
fi

# Phase 6: recovery time (issue #5): kcqrs-replay rebuild --target lmdb / pg / all
# beside a raw read_committed consumer of the same topics. bench_replay.sh loads
# BENCH_REPLAY_EVENTS events once and alternates the four in each of its
# BENCH_SERVICE_RUNS rounds (every RESULT line carries of=<rounds>).
if want replay; then
    start_kafka
    start_pg
    phase_start
    echo "bench: replay ($SVC_RUNS rounds)" >&2
    KCQRS_BROKERS="$BROKERS" BENCH_PG_ADMIN_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres" \
        BUILD="$BUILD" BENCH_QUICK="$BENCH_QUICK" BENCH_REPLAY_RUNS="$SVC_RUNS" \
        run_prog replay 1 bench/bench_replay.sh
    phase_end replay
fi

# Phase 7: the PostgreSQL projector's write paths (bench_pg_apply) on the
# private PostgreSQL; compared with the raw consumer of the kafka phase.
if want pg; then
    start_pg
    pg_args=(--events "$([ "$BENCH_QUICK" = 1 ] && echo 50000 || echo 200000)"
        --modes copy,copy_staging,pipeline)
    want kafka || pg_args+=(--baseline none)
    export KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$port/kcqrs"
    echo "bench: pg warm-up" >&2
    KCQRS_LOG_LEVEL=warn run_prog pg warmup "$BDIR/bench_pg_apply" --events 20000 --modes copy --baseline none
    phase_start
    for run in $(seq "$BENCH_RUNS"); do
        echo "bench: run $run/$BENCH_RUNS: pg" >&2
        KCQRS_LOG_LEVEL=warn run_prog pg "$run" "$BDIR/bench_pg_apply" "${pg_args[@]}"
    done
    phase_end pg
fi

elapsed=$(($(date +%s) - start_s))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
python3 - "$RAW" "$TABLE_MD" "$BENCH_RUNS" "$BENCH_QUICK" "$BENCH_STRICT" \
    "commit $commit; $NCPU CPUs (${cpu:-unknown CPU}); $BENCH_RUNS runs$(want commands && echo " ($CMD_RUNS for commands)")$([ "$BENCH_QUICK" = 1 ] && echo ', quick mode'); pinning: $PINNING; load average $load_start at start; CPU used by other processes: $FOREIGN; ${elapsed}s" <<'PY'
import re, statistics, sys

raw, md_path, runs, quick, strict, about = sys.argv[1:7]
runs = int(runs)
order, vals, meta = [], {}, {}
for line in open(raw):
    kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    name = kv["name"]
    if name not in vals:
        order.append(name)
        vals[name] = []
        meta[name] = kv
    vals[name].append(float(kv["value"]))

def fmt(v, unit):
    if v is None:
        return ""
    if unit == "ms" or abs(v) < 100:
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.2f}"
    return f"{v:,.0f}"

def target_ok(tgt, v):
    m = re.fullmatch(r"(>=|<=|>|<)([0-9.eE+]+)", tgt)
    if not m:
        return None
    op, x = m.group(1), float(m.group(2))
    return {">=": v >= x, "<=": v <= x, ">": v > x, "<": v < x}[op]

head = ["benchmark", "median", "unit", "baseline", "baseline median", "ratio", "target",
        "spread"]
rows, missed, problems = [], [], []
med = {n: statistics.median(v) for n, v in vals.items()}
for n in order:
    v, unit, m = vals[n], meta[n]["unit"], med[n]
    want = int(meta[n].get("of", runs))
    if len(v) != want:
        problems.append(f"{n}: {len(v)} results for {want} runs")
    base = meta[n].get("baseline", "")
    bmed = med.get(base)
    if base and bmed is None:
        problems.append(f"{n}: baseline {base} has no result")
    ratio = f"{m / bmed:.3f}" if bmed else ""
    tgt = meta[n].get("target", "")
    if tgt.endswith("x"):  # a target on the ratio to the baseline: ">=0.5x"
        ok = bool(bmed) and target_ok(tgt[:-1], m / bmed)
        tgt = f"{tgt[:-1].replace('>=', '≥ ').replace('<=', '≤ ')}× {'met' if ok else 'MISSED'}"
        if not ok:
            missed.append(n)
    elif tgt:
        ok = target_ok(tgt, m)
        pretty = re.sub(r"([0-9.eE+]+)$", lambda g: fmt(float(g.group(1)), unit), tgt)
        tgt = f"{pretty.replace('>=', '≥ ').replace('<=', '≤ ')} {'met' if ok else 'MISSED'}"
        if not ok:
            missed.append(n)
    spread = f"{(max(v) - min(v)) / m * 100:.1f}%" if m else ""
    rows.append([n, fmt(m, unit), unit, base, fmt(bmed, meta.get(base, {}).get("unit", "")),
                 ratio, tgt, spread])

w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
line = lambda r: " | ".join(c.rjust(w[i]) if i in (1, 4, 5, 7) else c.ljust(w[i])
                            for i, c in enumerate(r))
print()
print(line(head))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(line(r))
print(f"\n{about}")
with open(md_path, "w") as f:
    f.write(f"<!-- bench/run.sh: {about} -->\n\n")
    f.write("| " + " | ".join(head) + " |\n")
    f.write("|" + "|".join("---:" if i in (1, 4, 5, 7) else "---" for i in range(len(head))) + "|\n")
    for r in rows:
        f.write("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n")
    counts = "/".join(str(c) for c in sorted({int(meta[n].get("of", runs)) for n in order}))
    f.write(f"\nMedians of {counts or runs} runs{' (quick mode)' if quick == '1' else ''}; ratio = median / "
            "baseline median, baselines measured in the same run; spread = (max - min) / median. "
            f"{about}.\n")
print(f"(written to {md_path})")
for p in problems:
    print(f"bench: {p}", file=sys.stderr)
if missed:
    print(f"bench: target missed: {', '.join(missed)}", file=sys.stderr)
sys.exit(1 if problems or (missed and strict == "1") else 0)
PY
