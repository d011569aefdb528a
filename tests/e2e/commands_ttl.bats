#!/usr/bin/env bats
# commands_ttl.bats — KCQRS_IDEMPOTENCY_TTL on a real kcqrs-commands (issue
# #19 items 6 and 7), with a window of 20 s: an Idempotency-Key answers its
# original answer inside the window and as a new request after it (a create retried is 409 because
# the id exists; another body with the old key is no longer 422), also after
# restarts from the snapshot and from the whole log; a finished run answers
# 409 run_finished inside the window and 404 not_found after it, and an open
# run still takes its attempt. One instance, one wait for the window.

load helpers
load commands_helpers
load workflows_helpers

TTL=20

setup_file() {
    wf_make_keys
    KCQRS_IDEMPOTENCY_TTL=${TTL}s cmd_start main
}

teardown_file() {
    cmd_stop_all
}

setup() {
    cmd_use main
}

# restart MODE: clean (SIGTERM, snapshot kept) or log (SIGKILL, snapshot
# removed: the log is read from the start).
restart() {
    local port
    port=$(cat "$BATS_FILE_TMPDIR/main.port")
    if [[ "$1" == clean ]]; then
        cmd_stop main
    else
        cmd_kill main
        rm -rf "$BATS_FILE_TMPDIR/lmdb-main"
    fi
    kq_wait_for 20 bash -c "[[ -z \$(ss -Hltn 'sport = :$port') ]]"
    KCQRS_IDEMPOTENCY_TTL=${TTL}s cmd_start main
}

@test "keys and finished runs: the original answer inside the window, a new request / 404 after it; restarts agree" {
    id="ttl-$RANDOM$RANDOM"
    t0=$(date +%s)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"one\"}" -H "Idempotency-Key: k-$id"
    [ "$CODE" = 201 ]
    first="$BODY"
    before=$(ends_sum)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"one\"}" -H "Idempotency-Key: k-$id"
    [ "$CODE" = 201 ]
    jsame "$first"
    req POST /api/v1/resources '{"name":"other"}' -H "Idempotency-Key: k-$id"
    assert_error 422
    assert_ends_unchanged "$before"

    wf="wf-ttl-$RANDOM$RANDOM"
    wf_create "$wf"
    req POST "/api/v1/workflows/$wf/runs" '{"id":"x"}'
    [ "$CODE" = 202 ]
    run_id=$(jf 'd["run_id"]')
    attempt "$run_id" 0 1 succeeded '"status_code":200'
    [ "$CODE" = 200 ]
    t_end=$(date +%s)
    attempt "$run_id" 0 2 retry '"next_delay_ms":5'
    assert_error 409
    jcheck "d['code'] == 'run_finished'"
    req POST "/api/v1/workflows/$wf/runs" '{"id":"y"}'
    [ "$CODE" = 202 ]
    open_id=$(jf 'd["run_id"]')

    # (that keys of the window survive restarts: commands.bats and
    # workflows.bats, with the default window)
    (($(date +%s) - t0 < TTL)) || kq_fail "the checks inside the window took longer than ${TTL}s"
    sleep $((TTL + 2 - ($(date +%s) - t_end)))
    before=$(all_ends_sum)
    # after the window: the same request is a new one (the id exists: 409);
    # the finished run is gone (404), nothing appended
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"one\"}" -H "Idempotency-Key: k-$id"
    assert_error 409
    jcheck "d['code'] == 'conflict'"
    attempt "$run_id" 0 2 retry '"next_delay_ms":5'
    assert_error 404
    jcheck "d['code'] == 'not_found'"
    assert_all_unchanged "$before"
    # ... and so after a restart from the snapshot or from the whole log
    for mode in clean log; do
        restart "$mode"
        req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"one\"}" -H "Idempotency-Key: k-$id"
        assert_error 409
        attempt "$run_id" 0 2 retry '"next_delay_ms":5'
        assert_error 404
        assert_all_unchanged "$before"
    done
    # the open run was never pruned; another request with the old key is new
    attempt "$open_id" 0 1 succeeded '"status_code":200'
    [ "$CODE" = 200 ]
    req POST /api/v1/resources '{"name":"other"}' -H "Idempotency-Key: k-$id"
    [ "$CODE" = 201 ]
    jcheck "d['id'] != '$id' and d['version'] == 1"
}
