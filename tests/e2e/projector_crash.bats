#!/usr/bin/env bats
# projector_crash.bats — crash safety of kcqrs-projector: while 10,000 events
# stream into the log (kq_produce_raw load, transactions of 20 records), the
# projector (both targets in one process) is started again and again with
# KCQRS_FAILPOINT=<point>:<N> and killed (SIGKILL) at each of the seven
# failpoints in turn, at least 20 kills in all; poison records are mixed in
# so dlq_after_produce is reached too (should the load end before the 21st
# kill, each further round first adds 100 events). At the end one clean run catches up
# and kq_rmcheck finds LMDB and PostgreSQL equal to the log: no event
# missing, none applied twice, every offset at the end of its partition.

load helpers
load projector_helpers

POINTS=(lmdb_after_put pg_after_insert lmdb_before_commit pg_before_commit dlq_after_produce
    lmdb_after_commit pg_after_commit)
MIN_KILLS=21

# PROJ_E2E_RUN=<tag>: topics of their own when rerunning against a reused
# broker (KQ_E2E_BROKERS); the counts below assume empty topics.
KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX${PROJ_E2E_RUN:+.$PROJ_E2E_RUN}"

setup_file() {
    kq_fresh_db projector_crash
    export KCQRS_PARTITIONS=3
}

teardown_file() {
    proj_no_sanitizer_report
}

teardown() {
    [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null
    proj_stop >/dev/null 2>&1 || true
    [[ -z "${BATS_TEST_COMPLETED:-}" ]] && proj_dump_log
    return 0
}

@test "crash safety: 10,000 events, >= 20 kills at the failpoints, both read models equal the log" {
    # (a wrapper records the load's exit status: it is not this shell's child)
    LOAD_PID=$(kq_bg "$BATS_FILE_TMPDIR/load.log" bash -c '"$0" "$@"; echo $? >"'"$BATS_FILE_TMPDIR"'/load.rc"' \
        "$KCQRS_TOOLS/kq_produce_raw" load 10000 --ids 400 --txn 20 --pause-ms 60 --prefix crash)
    kills=0 round=0 poison=0 missed=0 extra=0
    # A bound in time, not in rounds: how many rounds fit in the load's run
    # depends on how fast the projector starts and dies. kq_gone, not kill -0:
    # the load's wrapper may linger as a zombie nobody reaps.
    deadline=$((SECONDS + 300))
    declare -A per_point
    while [[ $kills -lt $MIN_KILLS ]] || ! kq_gone "$LOAD_PID"; do
        [[ $SECONDS -lt $deadline ]] || kq_fail "only $kills kills in $round rounds and 300 s"
        point=${POINTS[$((round % ${#POINTS[@]}))]}
        n=$((RANDOM % 4 + 1))
        if kq_gone "$LOAD_PID"; then
            # The 10,000 are in: a few more events so that the point is reached.
            kq_tool kq_produce_raw load 100 --ids 20 --txn 10 --prefix "extra-$round" >/dev/null
            extra=$((extra + 100))
        fi
        if [[ $point == dlq_after_produce ]]; then
            # Two runners dead-letter each poison record: pass 1 or 2.
            kq_tool kq_produce_raw raw resource $((round % 3)) "poison-$round" --random 64 >/dev/null
            poison=$((poison + 1))
            n=$((RANDOM % 2 + 1))
        fi
        KCQRS_FAILPOINT="$point:$n" proj_start
        if rc=$(proj_wait_exit 10); then
            if [[ $rc -eq 137 ]]; then
                kills=$((kills + 1))
                per_point[$point]=$((${per_point[$point]:-0} + 1))
            else
                kq_fail "round $round ($point:$n): the projector exited $rc"
            fi
        else
            # The point was not reached (the load may have ended): stop it cleanly.
            proj_stop
            missed=$((missed + 1))
        fi
        round=$((round + 1))
    done
    kq_wait_for 120 test -s "$BATS_FILE_TMPDIR/load.rc"
    LOAD_PID=
    cat "$BATS_FILE_TMPDIR/load.log"
    [ "$(cat "$BATS_FILE_TMPDIR/load.rc")" = 0 ]
    for p in "${!per_point[@]}"; do echo "kills at $p: ${per_point[$p]}"; done
    echo "$kills kills in $round rounds ($missed without a kill), $poison poison records, $extra events after the load"
    [ "$kills" -ge 20 ]
    for p in "${POINTS[@]}"; do
        [ "${per_point[$p]:-0}" -ge 1 ] || kq_fail "no kill at $p"
    done
    grep -c "killing the process" "$BATS_FILE_TMPDIR/projector.log"

    proj_catch_up all
    run rmcheck --pg "$KCQRS_PG_DSN"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"records $((10000 + extra + poison)) valid $((10000 + extra)) refused $poison "* ]]
    [[ "$output" == *"lmdb: equal"* && "$output" == *"pg: equal"* ]]
}
