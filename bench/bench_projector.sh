#!/usr/bin/env bash
# bench/bench_projector.sh — replay throughput of kcqrs-projector (issue #4):
# with N events in the log, events/s of `kcqrs-projector --target lmdb
# --exit-at-end` and of `--target pg --exit-at-end`, each from offset 0 into
# an empty read model, beside a raw read_committed librdkafka consumer
# (bench/bench_consume) reading the same topics in the same run.
#
#   bench/bench_projector.sh            prints RESULT lines (bench/run.sh protocol)
#
# Environment:
#   BUILD=build               where the binaries are
#   BENCH_PROJ_EVENTS=N       events to load (default 1000000; 100000 with BENCH_QUICK=1)
#   KCQRS_BROKERS             use this Kafka (default: start one with ops/kafka.sh)
#   BENCH_PG_ADMIN_DSN        a PostgreSQL superuser DSN to create the bench database
#                             (default: start a private one with ops/pg.sh --no-fsync)
#   KCQRS_PARTITIONS          partitions per topic (default 6)
# The events come from tests/tools/kq_produce_raw (transactions of 1000
# records, 10,000 aggregates at a time: 90% resources, 10% workflows); the
# load is not timed. Targets: LMDB >= 0.5x raw, PostgreSQL >= 0.1x raw (issue #15).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    N=${BENCH_PROJ_EVENTS:-100000}
else
    N=${BENCH_PROJ_EVENTS:-1000000}
fi
export KCQRS_PARTITIONS=${KCQRS_PARTITIONS:-6}
export KCQRS_TOPIC_PREFIX="bench.proj.$(date +%s).$$"
export KCQRS_PROJECTOR_ADDR=127.0.0.1:0
export KCQRS_LOG_LEVEL=${KCQRS_LOG_LEVEL:-warn}
TMP=$(mktemp -d /tmp/kcqrs-bench-proj.XXXXXX)
STARTED_KAFKA=0 STARTED_PG=0

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
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
db="bench_proj_$$"
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_PG_ADMIN_DSN" -c "CREATE DATABASE $db" >/dev/null
export KCQRS_PG_DSN="${BENCH_PG_ADMIN_DSN%/*}/$db"

echo "loading $N events into $KCQRS_TOPIC_PREFIX.* ($KCQRS_PARTITIONS partitions)" >&2
"$BUILD/tests/tools/kq_produce_raw" load "$N" --ids 10000 --txn 1000 --prefix bench >&2

"$BUILD/bench/bench_consume"

timed() { # timed NAME CMD...: events/s of CMD over N events
    local name="$1" t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" >"$TMP/$name.log" 2>&1 || { tail -n 20 "$TMP/$name.log" >&2; return 1; }
    t1=$(date +%s.%N)
    python3 -c "import sys; n, a, b = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]); print(f'{n / (b - a):.3f} seconds={b - a:.3f}')" "$N" "$t0" "$t1"
}

export KCQRS_LMDB_DIR="$TMP/lmdb"
mkdir -p "$KCQRS_LMDB_DIR"
r=$(timed lmdb "$BUILD/bin/kcqrs-projector" --target lmdb --exit-at-end)
echo "RESULT name=projector.lmdb unit=events/s value=${r% *} baseline=projector.raw_consumer target=>=0.5x events=$N ${r#* }"
r=$(timed pg "$BUILD/bin/kcqrs-projector" --target pg --exit-at-end)
echo "RESULT name=projector.pg unit=events/s value=${r% *} baseline=projector.raw_consumer target=>=0.1x events=$N ${r#* }"
# Both read models must equal the log, or the numbers mean nothing.
"$BUILD/tests/tools/kq_rmcheck" --pg "$KCQRS_PG_DSN" --quiet >&2
psql -X -q -d "$BENCH_PG_ADMIN_DSN" -c "DROP DATABASE $db" >/dev/null 2>&1 || true
