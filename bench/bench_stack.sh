#!/usr/bin/env bash
# bench/bench_stack.sh — one run of the full-stack benchmark (issue #15 item 1),
# called by bench/run.sh (BENCH_ONLY=stack) once per run; standalone it needs a
# broker and a PostgreSQL (KCQRS_BROKERS, BENCH_PG_ADMIN_DSN).
#
# In each run, on the same broker and PostgreSQL, two configurations take
# turns (the order alternates with the run number, so a slow patch of the
# machine hits both):
#   alone  kcqrs-commands by itself (fresh topic prefix): the baseline;
#   stack  what `make up` runs: kcqrs-commands, kcqrs-projector (LMDB and
#          PostgreSQL targets), kcqrs-query and kcqrs-worker (fresh prefix,
#          fresh database), every service with its default settings (access
#          log at info) except KCQRS_HTTP_MAX_PER_IP=0 (one load generator).
# Both start on topics preloaded with BENCH_STACK_PRELOAD valid events
# (tests/tools/kq_produce_raw load: 300,000; 30,000 quick), which the command
# side reads at start and the projector catches up on before the load (the
# state the memory target is about). Each gets, after six sequential creates and an unmeasured wrk warm-up, the
# same closed-loop create load (wrk -t1, keep-alive, bench/wrk_create.lua) at
# each of BENCH_STACK_CONNS (32 64 256) connections for BENCH_STACK_SECS
# seconds. Measured around each wrk run: commands/s, p50/p99, and the CPU
# seconds (utime + stime from /proc/<pid>/stat) of every process per 1,000
# commands: each kcqrs service, the broker (BENCH_KAFKA_PID) and PostgreSQL
# (the postmaster of BENCH_PG_DATA, its live children and its reaped ones).
# For the stack the CPU window ends when the projector has caught up (its
# lag back to at most one commit marker per partition), so the work a command
# causes downstream is counted. Then, on the stack only:
#   stack.rate        bench_rate: open loop at half this run's 64-connection
#                     rate, 64 connections: p50/p99 from each request's due time;
#   stack.visible_lmdb  qry_bench lag at BENCH_STACK_LAG_RATE creates/s: from the
#                     create's 201 to the 200 of GET /api/v1/resources/{id} with
#                     its consistency token (the LMDB read model);
#   stack.visible_pg  the same through GET /api/v1/resources/{id}/events
#                     (the PostgreSQL read model);
#   stack.rss_anon.*  RssAnon (/proc/<pid>/status) of each service after the
#                     load, and again after `kcqrs-replay rebuild --target all`
#                     of both read models while the stack runs (the query API
#                     follows the switch).
# Also stack.<config>.batch.c64: events per transaction of the writer during the
# 64-connection run (its /metrics, as bench_commands.sh).
# RESULT lines on stdout (bench/run.sh protocol); service logs in
# $BUILD/bench/logs/stack.*.log (access lines counted, not kept).
#
# Environment: BUILD (build), BENCH_STACK_RUN (1; its parity picks the order),
# BENCH_QUICK (0), BENCH_STACK_SECS (10; 3 quick), BENCH_STACK_CONNS ("32 64 256"),
# BENCH_STACK_PRELOAD (300000; 30000 quick; 0 = none),
# BENCH_STACK_LAG_RATE (1000), BENCH_STACK_LAG_SECS (10; 3 quick),
# KCQRS_BROKERS, BENCH_PG_ADMIN_DSN (postgresql://postgres@host:port/postgres),
# BENCH_KAFKA_PID, BENCH_PG_DATA (optional: the broker's and PostgreSQL's CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
RUN=${BENCH_STACK_RUN:-1}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SECS=${BENCH_STACK_SECS:-3} LAG_SECS=${BENCH_STACK_LAG_SECS:-3} WARM_SECS=1 RATE_SECS=3
    PRELOAD=${BENCH_STACK_PRELOAD:-30000}
else
    SECS=${BENCH_STACK_SECS:-10} LAG_SECS=${BENCH_STACK_LAG_SECS:-10} WARM_SECS=2 RATE_SECS=10
    PRELOAD=${BENCH_STACK_PRELOAD:-300000}
fi
CONNS=${BENCH_STACK_CONNS:-32 64 256}
LAG_RATE=${BENCH_STACK_LAG_RATE:-1000}
: "${KCQRS_BROKERS:?KCQRS_BROKERS must name the broker}"
: "${BENCH_PG_ADMIN_DSN:?BENCH_PG_ADMIN_DSN must name a PostgreSQL superuser DSN}"
LOGS=$BUILD/bench/logs
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kcqrs-bench-stack.XXXXXX")
HZ=$(getconf CLK_TCK)
PIDS=()
DB=
mkdir -p "$LOGS"

die() { echo "bench_stack: $*" >&2; exit 1; }
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    local rc=$?
    stop_all
    [ -z "$DB" ] || psql -X -q -d "$BENCH_PG_ADMIN_DSN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # URL PID SECONDS
    local i
    for i in $(seq $(($3 * 10))); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
# ticks PID: utime + stime of a live process (0 when gone)
ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
# pg_ticks: the postmaster (incl. its reaped children) plus its live children
pg_ticks() {
    local pm t p
    [ -n "${BENCH_PG_DATA:-}" ] && [ -f "$BENCH_PG_DATA/postmaster.pid" ] || { echo 0; return; }
    pm=$(head -n 1 "$BENCH_PG_DATA/postmaster.pid")
    t=$(sed 's/.*) //' "/proc/$pm/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }')
    for p in $(pgrep -P "$pm" 2>/dev/null); do t=$((t + $(ticks "$p"))); done
    echo "${t:-0}"
}
rss_anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

KEYS=$TMP/keys
WKEY=$("$BUILD/bin/kcqrs-keys" create --name bench-writer --roles writer --file "$KEYS")
RKEY=$("$BUILD/bin/kcqrs-keys" create --name bench-reader --roles reader --file "$KEYS")
"$BUILD/bin/kcqrs-keys" create --name bench-worker --roles worker --file "$KEYS" >"$TMP/worker.key"
chmod 600 "$TMP/worker.key"
export KCQRS_BROKERS KCQRS_KEYS_FILE=$KEYS KCQRS_HTTP_MAX_PER_IP=0
export KCQRS_KEK_FILE=$TMP/kek
"$BUILD/bin/kcqrs-keys" kek-add --file "$TMP/kek" >/dev/null || die "cannot create a KEK file"

# emit LINE...: RESULT lines
emit() { local l; for l in "$@"; do echo "RESULT $l"; done; }

# start NAME BIN ADDRVAR ADDR [VAR=VALUE...]: a service in the background, logged.
start() {
    local name=$1 bin=$2 var=$3 addr=$4
    shift 4
    env "$var=$addr" "$@" "$BUILD/bin/$bin" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
    wait_http "http://$addr/ready" "$!" 120 ||
        { tail -n 20 "$TMP/$name.log" >&2; die "$bin did not become ready (run $RUN)"; }
}
keep_logs() { # CONFIG
    local f n
    for f in "$TMP"/*.log; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .log)
        {
            grep -v ' http [A-Z]* /[^ ]* [0-9]* ' "$f" || true
            echo "bench: $(grep -c ' http [A-Z]* /[^ ]* [0-9]* ' "$f" || true) access-log lines omitted"
        } >"$LOGS/stack.$1.$n.$RUN.log"
        rm -f "$f"
    done
}

# warm PORT TAG: six sequential creates (each must be 201), then wrk for WARM_SECS.
warm() {
    local i code
    for i in 1 2 3 4 5 6; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
            -H "Authorization: Bearer $WKEY" -H 'Content-Type: application/json' \
            -d "{\"id\":\"warm-$2-$i\",\"name\":\"warm-up\"}" "http://127.0.0.1:$1/api/v1/resources") || code=000
        [ "$code" = 201 ] || die "warm-up create $i answered $code (run $RUN, $2)"
    done
    wrk_run "$1" "$2w" 64 "$WARM_SECS" >/dev/null
}

# wrk_run PORT TAG CONNS SECS: prints "requests duration_us p50_us p99_us"; fails
# on any socket error or answer other than 201.
wrk_run() {
    local log="$TMP/wrk.$2.out" line
    BENCH_ID_TAG="s$RUN$2" BENCH_KEY=$WKEY wrk -t1 -c"$3" -d"$4s" --latency -s bench/wrk_create.lua \
        "http://127.0.0.1:$1/api/v1/resources" >"$log" 2>&1 || { cat "$log" >&2; die "wrk failed ($2)"; }
    cat "$log" >>"$LOGS/stack.wrk.$RUN.log"
    line=$(grep '^WRK ' "$log") || die "no summary from wrk ($2)"
    python3 - "$line" <<'PY' || die "wrk run $2 rejected (see $LOGS/stack.wrk.$RUN.log)"
import sys
kv = dict(f.split("=", 1) for f in sys.argv[1].split()[1:])
if int(kv["errors"]) or int(kv["non201"]) or int(kv["requests"]) == 0:
    sys.exit(f"wrk: {kv['errors']} socket errors, {kv['non201']} answers other than 201 "
             f"(first {kv['first_status']}), {kv['requests']} requests")
print(kv["requests"], kv["duration_us"], kv["p50_us"], kv["p99_us"])
PY
}

# preload PREFIX: PRELOAD valid events into the prefix's topics.
preload() {
    [ "$PRELOAD" -gt 0 ] || return 0
    KCQRS_TOPIC_PREFIX=$1 "$BUILD/tests/tools/kq_topics" create >>"$LOGS/stack.preload.$RUN.log" 2>&1 ||
        die "kq_topics create failed (see $LOGS/stack.preload.$RUN.log)"
    KCQRS_TOPIC_PREFIX=$1 "$BUILD/tests/tools/kq_produce_raw" load "$PRELOAD" --ids 10000 --txn 1000 \
        --prefix pre >>"$LOGS/stack.preload.$RUN.log" 2>&1 || die "preload failed (see $LOGS/stack.preload.$RUN.log)"
}

# batch_sum PORT: "<sum> <count>" of kcqrs_commands_batch_size
batch_sum() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk '/^kcqrs_commands_batch_size_sum / { s = $2 }
        /^kcqrs_commands_batch_size_count / { c = $2 } END { printf "%d %d\n", s, c }'
}

# caught_up PORT: wait (up to 180 s) until the projector's lag is at most one
# record (a commit marker) per partition and target.
caught_up() {
    local i
    for i in $(seq 1800); do
        curl -sf "http://127.0.0.1:$1/metrics" | awk '/^kcqrs_projector_lag\{/ { s += $2; n++ }
            END { exit !(n > 0 && s <= n) }' && return 0
        sleep 0.1
    done
    echo "bench_stack: the projector did not catch up within 180 s (run $RUN)" >&2
    return 1
}

# sample NAMES...: "name=ticks" for each process name (commands projector query
# worker broker postgres) into the array SAMPLE.
sample() {
    local n p
    SAMPLE=()
    for n in "$@"; do
        case $n in
        broker) p=${BENCH_KAFKA_PID:-}; SAMPLE+=("$n=$([ -n "$p" ] && ticks "$p" || echo 0)") ;;
        postgres) SAMPLE+=("$n=$(pg_ticks)") ;;
        *) p=$(eval echo "\${PID_$n:-}"); SAMPLE+=("$n=$(ticks "$p")") ;;
        esac
    done
}

# measure CONFIG PORT PROCS...: the load at each connection count.
measure() {
    local cfg=$1 port=$2 c req dur p50 p99 rate base tgt s0 s1 i n t tot bs0 bc0 bs1 bc1
    shift 2
    for c in $CONNS; do
        read -r bs0 bc0 < <(batch_sum "$port")
        sample "$@"
        s0=("${SAMPLE[@]}")
        read -r req dur p50 p99 < <(wrk_run "$port" "$cfg$c" "$c" "$SECS") || true
        [ -n "${p99:-}" ] || die "wrk at $c connections failed ($cfg, run $RUN)"
        [ "$cfg" = alone ] || caught_up "$PROJ_PORT" || true
        sample "$@"
        s1=("${SAMPLE[@]}")
        read -r bs1 bc1 < <(batch_sum "$port")
        [ "$c" != 64 ] || [ "$bc1" -le "$bc0" ] ||
            emit "name=stack.$cfg.batch.c64 unit=events/txn value=$(awk -v s="$((bs1 - bs0))" -v c="$((bc1 - bc0))" 'BEGIN { printf "%.2f", s / c }')"
        rate=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.1f", r / (d / 1e6) }')
        [ "$c" = 64 ] && eval "RATE64_$cfg=$rate"
        if [ "$cfg" = alone ]; then
            emit "name=stack.alone.c$c unit=cmd/s value=$rate connections=$c seconds=$SECS"
        elif [ "$cfg" = stack ]; then
            tgt=""
            [ "$c" = 64 ] && tgt=" target=>=0.7x"
            emit "name=stack.create.c$c unit=cmd/s value=$rate baseline=stack.alone.c$c$tgt connections=$c seconds=$SECS"
            [ "$c" = 64 ] && emit "name=stack.create.c64.abs unit=cmd/s value=$rate target=>=5000"
        else
            emit "name=stack.$cfg.create.c$c unit=cmd/s value=$rate baseline=stack.create.c$c connections=$c seconds=$SECS"
        fi
        emit "name=stack.$cfg.c$c.p50 unit=ms value=$(awk -v v="$p50" 'BEGIN { printf "%.3f", v / 1000 }')" \
            "name=stack.$cfg.c$c.p99 unit=ms value=$(awk -v v="$p99" 'BEGIN { printf "%.3f", v / 1000 }')"
        tot=0
        for i in "${!s0[@]}"; do
            n=${s0[$i]%%=*}
            t=$((${s1[$i]#*=} - ${s0[$i]#*=}))
            tot=$((tot + t))
            [ "$c" = 64 ] || continue
            base=""
            [ "$cfg" = stack ] && { [ "$n" = commands ] || [ "$n" = broker ]; } && base=" baseline=stack.alone.cpu.c64.$n"
            [ "$cfg" != stack ] && [ "$cfg" != alone ] && base=" baseline=stack.stack.cpu.c64.$n"
            emit "name=stack.$cfg.cpu.c64.$n unit=cpu-s/1k value=$(awk -v t="$t" -v h="$HZ" -v r="$req" 'BEGIN { printf "%.4f", t / h / (r / 1000) }')$base"
        done
        base=""
        [ "$cfg" = stack ] && base=" baseline=stack.alone.cpu.c$c.total"
        [ "$cfg" != stack ] && [ "$cfg" != alone ] && base=" baseline=stack.stack.cpu.c$c.total"
        emit "name=stack.$cfg.cpu.c$c.total unit=cpu-s/1k value=$(awk -v t="$tot" -v h="$HZ" -v r="$req" 'BEGIN { printf "%.4f", t / h / (r / 1000) }')$base"
        echo "bench_stack: run $RUN $cfg c$c: $rate cmd/s" >&2
    done
}

run_alone() {
    local port
    port=$(free_port)
    mkdir -p "$TMP/alone"
    preload "kqstack$$a$RUN"
    start commands kcqrs-commands KCQRS_COMMANDS_ADDR "127.0.0.1:$port" \
        KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$(free_port)" \
        KCQRS_TOPIC_PREFIX="kqstack$$a$RUN" KCQRS_LMDB_DIR="$TMP/alone"
    warm "$port" a
    measure alone "$port" commands broker
    stop_all
    keep_logs alone
}

# run_stack [NAME VAR=VALUE...]: the stack (or, with NAME, the stack with those
# settings: every entry named stack.NAME.*, compared with the plain stack).
run_stack() {
    local cfg=${1:-stack} np cport ciport qport wport half i n kb tot
    [ $# -eq 0 ] || shift
    np=stack
    [ "$cfg" = stack ] || np=stack.$cfg
    DB="bench_stack_$$_${RUN}_$cfg"
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_PG_ADMIN_DSN" -c "CREATE DATABASE $DB OWNER kcqrs" >/dev/null ||
        die "cannot create database $DB"
    local dsn
    dsn=$(sed -E "s|//[^@]*@|//kcqrs@|; s|/[^/]*$|/$DB|" <<<"$BENCH_PG_ADMIN_DSN")
    cport=$(free_port) PROJ_PORT=$(free_port) qport=$(free_port) wport=$(free_port)
    mkdir -p "$TMP/stack"
    rm -rf "$TMP/stack"
    mkdir -p "$TMP/stack"
    export KCQRS_TOPIC_PREFIX="kqstack$$s$RUN$cfg" KCQRS_LMDB_DIR="$TMP/stack" KCQRS_PG_DSN="$dsn"
    [ $# -eq 0 ] || export "$@"
    preload "$KCQRS_TOPIC_PREFIX"
    ciport=$(free_port) # the internal listener, where the worker records
    start commands kcqrs-commands KCQRS_COMMANDS_ADDR "127.0.0.1:$cport" \
        KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$ciport"
    start projector kcqrs-projector KCQRS_PROJECTOR_ADDR "127.0.0.1:$PROJ_PORT"
    start query kcqrs-query KCQRS_QUERY_ADDR "127.0.0.1:$qport"
    start worker kcqrs-worker KCQRS_WORKER_ADDR "127.0.0.1:$wport" \
        KCQRS_COMMANDS_ADDR="127.0.0.1:$cport" KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$ciport" \
        KCQRS_WORKER_KEY_FILE="$TMP/worker.key"
    warm "$cport" "s$cfg"
    caught_up "$PROJ_PORT" || true
    measure "$cfg" "$cport" commands projector query worker broker postgres

    half=$(awk -v r="$(eval echo "\$RATE64_$cfg")" 'BEGIN { printf "%.0f", r / 2 }')
    "$BUILD/bench/bench_rate" --url "http://127.0.0.1:$cport/api/v1/resources" --key "$WKEY" \
        --rate "$half" --seconds "$RATE_SECS" --connections 64 --tag "sr$RUN$cfg" --name "$np.rate" \
        2>>"$LOGS/stack.rate.$RUN.log" | sed -E "s/ target=[^ ]*//; /name=stack.rate.p99 /s/\$/ target=<=25/" ||
        die "bench_rate failed (see $LOGS/stack.rate.$RUN.log)"
    caught_up "$PROJ_PORT" || true
    "$BUILD/tests/tools/qry_bench" lag --cmd "http://127.0.0.1:$cport" --url "http://127.0.0.1:$qport" \
        --wkey "$WKEY" --key "$RKEY" --rate "$LAG_RATE" --seconds "$LAG_SECS" --connections 256 \
        --tag "sl$RUN$cfg" --name "$np.visible_lmdb" 2>>"$LOGS/stack.lag.$RUN.log" |
        sed '/name=stack.visible_lmdb.p99 /s/$/ target=<=30/' || die "qry_bench lag (LMDB) failed (see $LOGS/stack.lag.$RUN.log)"
    "$BUILD/tests/tools/qry_bench" lag --cmd "http://127.0.0.1:$cport" --url "http://127.0.0.1:$qport" \
        --wkey "$WKEY" --key "$RKEY" --rate "$LAG_RATE" --seconds "$LAG_SECS" --connections 256 \
        --tag "sp$RUN$cfg" --read events --name "$np.visible_pg" 2>>"$LOGS/stack.lag.$RUN.log" ||
        die "qry_bench lag (PostgreSQL) failed (see $LOGS/stack.lag.$RUN.log)"
    caught_up "$PROJ_PORT" || true

    # memory after the load, then after a rebuild of both read models
    n=$(curl -sf "http://127.0.0.1:$cport/metrics" | awk -v p="$PRELOAD" '/^kcqrs_commands_events_appended_total / { print $2 + p }')
    for phase in load rebuilt; do
        if [ "$phase" = rebuilt ]; then
            "$BUILD/bin/kcqrs-replay" rebuild --target all >>"$LOGS/stack.replay.$RUN.log" 2>&1 ||
                die "kcqrs-replay rebuild failed (see $LOGS/stack.replay.$RUN.log)"
            caught_up "$PROJ_PORT" || true
            sleep 1
        fi
        tot=0
        for i in commands projector query worker; do
            kb=$(rss_anon_kb "$(eval echo "\$PID_$i")")
            tot=$((tot + kb))
            emit "name=$np.rss_anon.$phase.$i unit=MB value=$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }') events=$n"
        done
        tgt=""
        [ "$phase" = rebuilt ] && [ "$cfg" = stack ] && tgt=" target=<=100"
        emit "name=$np.rss_anon.$phase.total unit=MB value=$(awk -v k="$tot" 'BEGIN { printf "%.1f", k / 1024 }') events=$n$tgt"
    done
    emit "name=$np.events unit=events value=$n"
    stop_all
    keep_logs "$cfg"
    psql -X -q -d "$BENCH_PG_ADMIN_DSN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    DB=
    [ $# -eq 0 ] || unset "${@%%=*}"
}

# BENCH_STACK_AB="NAME VAR=VALUE..." adds a third configuration: the stack with
# those settings (e.g. "nolinger KCQRS_BATCH_LINGER_MAX_US=0"), right after the stack.
read -r -a AB <<<"${BENCH_STACK_AB:-}"
if [ $((RUN % 2)) = 1 ]; then
    run_alone
    run_stack
    [ "${#AB[@]}" -eq 0 ] || run_stack "${AB[@]}"
else
    [ "${#AB[@]}" -eq 0 ] || run_stack "${AB[@]}"
    run_stack
    run_alone
fi
