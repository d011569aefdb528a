#!/usr/bin/env bash
# bench/bench_replay.sh — recovery time (issue #5): with N events in the log,
# the wall time of `kcqrs-replay rebuild --target lmdb`, `--target pg` and
# `--target all` (start to exit: shadow, bulk load, indexes, catch-up, switch)
# beside the time a raw read_committed consumer (bench/bench_consume) takes to
# read the same topics to the end, in the same run.
#
#   bench/bench_replay.sh            prints RESULT lines (bench/run.sh protocol)
#
# The events are loaded once (not timed); then BENCH_REPLAY_RUNS rounds, each
# round alternating raw, lmdb, pg, all, so drift of the machine spreads over
# every entry. Every RESULT line carries of=<runs>: bench/run.sh takes the
# median over the rounds. After the last round the read models (the last
# rebuild's, now live) are checked against the log with tests/tools/kq_rmcheck
# and with `kcqrs-replay verify --target all`; a model that differs from the
# log fails the benchmark, because then its time means nothing.
#
# Environment:
#   BUILD=build                where the binaries are
#   BENCH_REPLAY_EVENTS=N      events to load (default 1000000; 100000 with BENCH_QUICK=1)
#   BENCH_REPLAY_RUNS=R        rounds (default 3)
#   KCQRS_BROKERS              use this Kafka (default: start one with ops/kafka.sh)
#   BENCH_PG_ADMIN_DSN         a PostgreSQL superuser DSN to create the bench database
#                              (default: start a private one with ops/pg.sh --no-fsync)
#   KCQRS_PARTITIONS           partitions per topic (default 6)
# Entries (seconds; ratio = median / raw median):
#   replay.raw_consumer        the baseline
#   replay.lmdb                target <= 2x raw
#   replay.pg                  target <= 6x raw (issue #15)
#   replay.all                 both targets at once (no target of its own)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    N=${BENCH_REPLAY_EVENTS:-100000}
else
    N=${BENCH_REPLAY_EVENTS:-1000000}
fi
RUNS=${BENCH_REPLAY_RUNS:-3}
case "$N" in '' | *[!0-9]* | 0) echo "bench_replay: BENCH_REPLAY_EVENTS must be a positive integer" >&2; exit 2 ;; esac
case "$RUNS" in '' | *[!0-9]* | 0) echo "bench_replay: BENCH_REPLAY_RUNS must be a positive integer" >&2; exit 2 ;; esac
for b in "$BUILD/bin/kcqrs-replay" "$BUILD/bench/bench_consume" "$BUILD/tests/tools/kq_produce_raw" \
    "$BUILD/tests/tools/kq_rmcheck"; do
    [ -x "$b" ] || { echo "bench_replay: $b is missing (make bench builds it)" >&2; exit 2; }
done
export KCQRS_PARTITIONS=${KCQRS_PARTITIONS:-6}
export KCQRS_TOPIC_PREFIX="bench.replay.$(date +%s).$$"
export KCQRS_LOG_LEVEL=${KCQRS_LOG_LEVEL:-warn}
TMP=$(mktemp -d /tmp/kcqrs-bench-replay.XXXXXX)
STARTED_KAFKA=0 STARTED_PG=0 DB=

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
    [ -n "$DB" ] && psql -X -q -d "$BENCH_PG_ADMIN_DSN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    [ "$STARTED_KAFKA" = 1 ] && ops/kafka.sh stop "$TMP/kafka" >/dev/null 2>&1
    [ "$STARTED_PG" = 1 ] && ops/pg.sh stop "$TMP/pg" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${KCQRS_BROKERS:-}" ]; then
    p1=$(free_port) p2=$(free_port)
    ops/kafka.sh start "$TMP/kafka" "$p1" "$p2" >"$TMP/kafka.log" 2>&1
    STARTED_KAFKA=1
    export KCQRS_BROKERS="127.0.0.1:$p1"
fi
if [ -z "${BENCH_PG_ADMIN_DSN:-}" ]; then
    pp=$(free_port)
    ops/pg.sh start "$TMP/pg" "$pp" --no-fsync >"$TMP/pg.log" 2>&1
    STARTED_PG=1
    BENCH_PG_ADMIN_DSN="postgresql://postgres@127.0.0.1:$pp/postgres"
fi
DB="bench_replay_$$"
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_PG_ADMIN_DSN" -c "CREATE DATABASE $DB" >/dev/null
export KCQRS_PG_DSN="${BENCH_PG_ADMIN_DSN%/*}/$DB"
export KCQRS_LMDB_DIR="$TMP/lmdb"
mkdir -p "$KCQRS_LMDB_DIR"

echo "loading $N events into $KCQRS_TOPIC_PREFIX.* ($KCQRS_PARTITIONS partitions)" >&2
"$BUILD/tests/tools/kq_produce_raw" load "$N" --ids 10000 --txn 1000 --prefix bench >&2

# timed NAME CMD...: wall seconds of CMD (its output in $TMP/NAME.log)
timed() {
    local name="$1" t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" >"$TMP/$name.log" 2>&1 || { echo "bench_replay: $name failed:" >&2; tail -n 20 "$TMP/$name.log" >&2; return 1; }
    t1=$(date +%s.%N)
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$t0" "$t1"
}

# phases NAME: "<target>.<phase>=<seconds> ..." from the final --json object of kcqrs-replay
# (e.g. lmdb.bulk=5.1 lmdb.finish=0.2 lmdb.tail=0.01 lmdb.switch=0.001), "" if none
phases() {
    python3 - "$TMP/$1.log" <<'PY'
import json, sys
last = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "result" in d and "targets" in d:
            last = d
out = []
for t in (last or {}).get("targets", []):
    for k, v in t.get("durations", {}).items():
        out.append(f"{t.get('target')}.{k}={v:.3f}")
print(" ".join(out))
PY
}

for run in $(seq "$RUNS"); do
    echo "round $run/$RUNS: raw consumer" >&2
    s=$(timed raw "$BUILD/bench/bench_consume")
    echo "RESULT name=replay.raw_consumer unit=s value=$s of=$RUNS events=$N"
    for t in lmdb pg all; do
        echo "round $run/$RUNS: kcqrs-replay rebuild --target $t" >&2
        s=$(timed "$t" "$BUILD/bin/kcqrs-replay" rebuild --target "$t" --json)
        case $t in
        lmdb) tgt="target=<=2x" ;;
        pg) tgt="target=<=6x" ;;
        *) tgt="" ;;
        esac
        echo "RESULT name=replay.$t unit=s value=$s baseline=replay.raw_consumer $tgt of=$RUNS events=$N $(phases "$t")"
    done
done

# The models the last rebuild switched in must equal the log.
echo "checking the rebuilt read models against the log" >&2
"$BUILD/tests/tools/kq_rmcheck" --pg "$KCQRS_PG_DSN" --quiet >&2
"$BUILD/bin/kcqrs-replay" verify --target all >&2
