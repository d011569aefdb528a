# tests/e2e/projector_helpers.bash — run kcqrs-projector black-box for the
# projector*.bats files.
#
# Load after helpers:     load helpers
#                         load projector_helpers
#
# proj_start [ARGS...]: start build/bin/kcqrs-projector in the background with
#   KCQRS_LMDB_DIR=$PROJ_LMDB (default $BATS_FILE_TMPDIR/lmdb) and the admin
#   port $PROJ_PORT (chosen once per file), log appended to
#   $BATS_FILE_TMPDIR/projector.log; sets PROJ_PID (also in proj.pid). Its exit
#   status lands in $BATS_FILE_TMPDIR/proj.rc. Extra environment (e.g.
#   KCQRS_FAILPOINT) comes from the caller.
# proj_wait_exit S: wait for the instance to end; prints its exit status.
# proj_stop: SIGTERM, expect exit status 0 within 20 s.
# proj_url PATH: the admin URL.
# proj_wait_ready [S]: wait until GET /ready answers 200.
# proj_metric NAME_WITH_LABELS: one sample's value from /metrics.
# proj_catch_up [TARGET]: run `kcqrs-projector --target TARGET --exit-at-end`
#   (default all) in the foreground; fails unless it exits 0 within 120 s.
# rmcheck [ARGS...]: kq_rmcheck on this file's LMDB and PostgreSQL ($KCQRS_PG_DSN).

proj_init() {
    export PROJ_LMDB="${PROJ_LMDB:-$BATS_FILE_TMPDIR/lmdb}"
    mkdir -p "$PROJ_LMDB"
    if [[ ! -f "$BATS_FILE_TMPDIR/proj.port" ]]; then
        kq_free_port >"$BATS_FILE_TMPDIR/proj.port"
    fi
    PROJ_PORT=$(cat "$BATS_FILE_TMPDIR/proj.port")
    export PROJ_PORT
}

proj_url() { echo "http://127.0.0.1:$PROJ_PORT$1"; }

proj_start() {
    proj_init
    rm -f "$BATS_FILE_TMPDIR/proj.pid" "$BATS_FILE_TMPDIR/proj.rc"
    echo "--- start $* (failpoint ${KCQRS_FAILPOINT:-none})" >>"$BATS_FILE_TMPDIR/projector.log"
    # A wrapper records the exit status (tests and setup_file run in different shells).
    D="$BATS_FILE_TMPDIR" KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_PROJECTOR_ADDR="127.0.0.1:$PROJ_PORT" \
        kq_bg "$BATS_FILE_TMPDIR/projector.cur.log" bash -c \
        '"$0" "$@" & echo $! >"$D/proj.pid.tmp"; mv "$D/proj.pid.tmp" "$D/proj.pid"; wait $!; echo $? >"$D/proj.rc"' \
        "$KCQRS_BIN/kcqrs-projector" "$@" >/dev/null
    kq_wait_for 10 test -s "$BATS_FILE_TMPDIR/proj.pid"
    PROJ_PID=$(cat "$BATS_FILE_TMPDIR/proj.pid")
}

# proj_wait_exit S: wait until the instance ended (at most S seconds); prints its status.
proj_wait_exit() {
    kq_wait_for "$1" test -s "$BATS_FILE_TMPDIR/proj.rc" || return 1
    proj_collect_log
    cat "$BATS_FILE_TMPDIR/proj.rc"
}

# Append the current instance's log to projector.log (call after it ended).
proj_collect_log() {
    cat "$BATS_FILE_TMPDIR/projector.cur.log" >>"$BATS_FILE_TMPDIR/projector.log" 2>/dev/null || true
    : >"$BATS_FILE_TMPDIR/projector.cur.log"
}

proj_stop() {
    local rc pid
    pid=$(cat "$BATS_FILE_TMPDIR/proj.pid" 2>/dev/null) || return 0
    [[ -s "$BATS_FILE_TMPDIR/proj.rc" ]] && return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! rc=$(proj_wait_exit 20); then
        kill -KILL "$pid" 2>/dev/null || true
        kq_fail "kcqrs-projector did not stop within 20 s of SIGTERM"
        return 1
    fi
    [[ $rc -eq 0 ]] || kq_fail "kcqrs-projector exited $rc after SIGTERM"
}

proj_wait_ready() {
    kq_wait_http "$(proj_url /ready)" "${1:-60}"
}

proj_metric() {
    curl -fsS --max-time 5 "$(proj_url /metrics)" | awk -v n="$1" '$1 == n { print $2; exit }'
}

proj_catch_up() {
    proj_init
    echo "--- catch up --target ${1:-all}" >>"$BATS_FILE_TMPDIR/projector.log"
    KCQRS_FAILPOINT=none KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_PROJECTOR_ADDR="127.0.0.1:0" \
        timeout 120 "$KCQRS_BIN/kcqrs-projector" --target "${1:-all}" --exit-at-end \
        >>"$BATS_FILE_TMPDIR/projector.log" 2>&1 3>&-
}

rmcheck() {
    proj_init
    KCQRS_LMDB_DIR="$PROJ_LMDB" kq_tool kq_rmcheck "$@"
}

proj_dump_log() {
    proj_collect_log
    tail -n 60 "$BATS_FILE_TMPDIR/projector.log" >&2 || true
}

# proj_no_sanitizer_report: fail (showing the report) when any projector run of
# this file logged an ASan/LSan/UBSan report — call it from teardown_file, so
# KCQRS_BIN=build/san-address-undefined/bin runs these files under the
# sanitizers for real.
proj_no_sanitizer_report() {
    proj_collect_log
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$BATS_FILE_TMPDIR/projector.log" 2>/dev/null; then
        echo "kcqrs-projector: sanitizer report:" >&2
        grep -E -A 24 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
            "$BATS_FILE_TMPDIR/projector.log" | head -n 80 >&2
        return 1
    fi
}
