#!/usr/bin/env bats
# projector_pg_down.bats — PostgreSQL stopped for a while under load: the LMDB
# target keeps up with the log on its own (its own thread, consumer and
# offsets), the PostgreSQL target reports itself down (/ready 503,
# kcqrs_projector_connected{target="pg"} 0, errors counted) and catches up by
# itself once PostgreSQL is back; at the end both read models equal the log.
#
# The suite's PostgreSQL is shared by every file, so this file starts a
# private one (ops/pg.sh, free port, in $BATS_FILE_TMPDIR) and stops and
# restarts it.

load helpers
load projector_helpers

# See projector_crash.bats.
KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX${PROJ_E2E_RUN:+.$PROJ_E2E_RUN}"

pg_dir() { echo "$BATS_FILE_TMPDIR/pg"; }

private_pg_start() {
    "$KQ_REPO/ops/pg.sh" start "$(pg_dir)" "$(cat "$BATS_FILE_TMPDIR/pg.port")" --no-fsync \
        >>"$BATS_FILE_TMPDIR/pg.ops.log" 2>&1 3>&-
}

private_pg_stop() {
    "$KQ_REPO/ops/pg.sh" stop "$(pg_dir)" >>"$BATS_FILE_TMPDIR/pg.ops.log" 2>&1 3>&-
}

setup_file() {
    local attempt started=0
    for attempt in 1 2 3; do
        kq_free_port >"$BATS_FILE_TMPDIR/pg.port"
        if private_pg_start; then
            started=1
            break
        fi
        grep -q "already in use" "$BATS_FILE_TMPDIR/pg.ops.log" || break
    done
    if [[ $started != 1 ]]; then
        cat "$BATS_FILE_TMPDIR/pg.ops.log" >&2
        return 1
    fi
    export KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$(cat "$BATS_FILE_TMPDIR/pg.port")/kcqrs"
    export KCQRS_KAFKA_TIMEOUT_MS=3000 # also bounds the PostgreSQL connect
    export KCQRS_PARTITIONS=3
}

teardown_file() {
    proj_stop || true
    private_pg_stop || true
    proj_no_sanitizer_report
}

teardown() {
    [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null
    [[ -z "${BATS_TEST_COMPLETED:-}" ]] && proj_dump_log
    return 0
}

@test "PostgreSQL stopped during load: LMDB stays current, PostgreSQL catches up after restart" {
    kq_tool kq_produce_raw load 500 --ids 100 --prefix before >/dev/null
    proj_start
    proj_wait_ready 60
    kq_wait_for 30 rmcheck --pg "$KCQRS_PG_DSN"

    LOAD_PID=$(kq_bg "$BATS_FILE_TMPDIR/load.log" bash -c '"$0" "$@"; echo $? >"'"$BATS_FILE_TMPDIR"'/load.rc"' \
        "$KCQRS_TOOLS/kq_produce_raw" load 4000 --ids 300 --txn 20 --pause-ms 30 --prefix during)
    sleep 2
    private_pg_stop
    kq_wait_for 120 test -s "$BATS_FILE_TMPDIR/load.rc"
    LOAD_PID=
    [ "$(cat "$BATS_FILE_TMPDIR/load.rc")" = 0 ]

    # PostgreSQL is down: LMDB alone equals the whole log.
    kq_wait_for 30 rmcheck
    [ "$(proj_metric 'kcqrs_projector_connected{target="pg"}')" = 0 ]
    [ "$(proj_metric 'kcqrs_projector_connected{target="lmdb"}')" = 1 ]
    [ "$(proj_metric 'kcqrs_projector_target_errors_total{target="pg"}')" -ge 1 ]
    code=$(curl -s -o /dev/null -w '%{http_code}' "$(proj_url /ready)")
    [ "$code" = 503 ]
    lag=$(curl -fsS "$(proj_url /metrics)" | awk '$1 ~ /^kcqrs_projector_lag\{target="pg"/ { s += $2 } END { print s + 0 }')
    echo "pg lag while down: $lag"
    [ "$lag" -gt 0 ]
    run rmcheck --no-lmdb --pg "$KCQRS_PG_DSN"
    [ "$status" -eq 1 ] # and PostgreSQL is behind

    private_pg_start
    kq_wait_for 60 rmcheck --pg "$KCQRS_PG_DSN"
    proj_wait_ready 30
    run rmcheck --pg "$KCQRS_PG_DSN"
    echo "$output"
    [[ "$output" == *"records 4500 valid 4500 "* ]]
    proj_stop
}
