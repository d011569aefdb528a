#!/usr/bin/env bats
# tests/e2e/worker.bats — kcqrs-worker end to end: workflows created and runs
# triggered through kcqrs-commands, steps sent to scripted receivers
# (kq_receiver, kq_smtp_sink), every attempt read back from the log with
# kcqrs-audit and compared with the retry policy; the breaker; a worker
# killed with SIGKILL in the middle of a run; two workers sharing the runs.
#
# One kcqrs-commands (c1) and one worker (w1) for the file, with short
# delays: retry base 100 ms, factor 2, cap 2 s, 4 attempts, total timeout
# 800 ms, breaker after 3 failures for 1.5 s.

load helpers
load commands_helpers
load worker_helpers

setup_file() {
    cmd_make_keys
    wk_make_key
    export KCQRS_WORKER_ALLOW_PRIVATE=1 KCQRS_WORKER_RETRY_BASE_MS=100 KCQRS_WORKER_RETRY_FACTOR=2 \
        KCQRS_WORKER_RETRY_CAP_MS=2000 KCQRS_WORKER_MAX_ATTEMPTS=4 KCQRS_WORKER_TIMEOUT_MS=800 \
        KCQRS_WORKER_CONNECT_TIMEOUT_MS=500 KCQRS_WORKER_BREAKER_FAILURES=3 \
        KCQRS_WORKER_BREAKER_COOLDOWN_MS=1500
    smtp_start mail 451,250
    KCQRS_WORKER_SMTP_URL=$(smtp_url mail)
    export KCQRS_WORKER_SMTP_URL KCQRS_WORKER_SMTP_FROM=kcqrs@example.com
    cmd_start c1
    echo "$CMD_URL" >"$BATS_FILE_TMPDIR/cmd_url"
    echo "$CMD_INTERNAL_URL" >"$BATS_FILE_TMPDIR/cmd_internal_url"
    wk_start w1
}

teardown_file() {
    local rc=0
    wk_stop_all || rc=1
    cmd_stop_all || rc=1
    rcv_stop_all
    return $rc
}

setup() {
    CMD_URL=$(cat "$BATS_FILE_TMPDIR/cmd_url")
    CMD_INTERNAL_URL=$(cat "$BATS_FILE_TMPDIR/cmd_internal_url")
}

# w1_long_timeout: (re)start w1 with a 10 s attempt timeout, once per file, for
# the tests whose receiver holds a request for seconds.
w1_long_timeout() {
    [[ -f "$BATS_FILE_TMPDIR/w1.long" ]] && return 0
    wk_stop w1
    KCQRS_WORKER_TIMEOUT_MS=10000 wk_start w1
    touch "$BATS_FILE_TMPDIR/w1.long"
}

# http_wf RECEIVER PATH [EXTRA_ACTION_JSON]: a one-step workflow to the receiver.
http_wf() {
    wf_create "{\"name\":\"wf $1\",\"secret\":\"e2e-secret-1\",\"actions\":[{\"type\":\"http\",\"url\":\"$(rcv_url "$1")$2\"${3:+,$3}}]}"
}

@test "200: one signed request with the rendered body and the delivery id; run succeeded" {
    rcv_start ok --secret e2e-secret-1 200
    http_wf ok /hook '"body_template":"{\"n\": {{payload.n}}, \"who\": \"{{payload.who}}\"}"'
    run_start "$WF_ID" '{"n":7,"who":"a\"b"}'
    [[ $(run_wait_end "$RUN_ID") == RunSucceeded ]]
    [[ $(run_types "$RUN_ID") == "RunStarted StepAttempted StepSucceeded RunSucceeded" ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ "$output" == "0 1 200 - $RUN_ID.0 '-'" ]]
    rcv_log ok
    [[ $(rcv_log ok | wc -l) -eq 1 ]]
    rcv_log ok | python3 -c 'import json, sys
r = json.loads(sys.stdin.readline())
h = {k.lower(): v for k, v in r["headers"].items()}
assert r["method"] == "POST" and r["path"] == "/hook", r
assert r["signature_ok"] is True, r
assert h["x-kcqrs-delivery"] == sys.argv[1] + ".0", h
assert json.loads(r["body"]) == {"n": 7, "who": "a\"b"}, r["body"]' "$RUN_ID"
}

@test "500 then 200: two attempts, next_delay_ms within the first backoff bound" {
    rcv_start r500 500,200
    http_wf r500 /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID") == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 2 ]]
    read -r step att status delay _ <<<"${lines[0]}"
    [[ "$step $att $status" == "0 1 500" ]]
    [[ $delay -ge 0 && $delay -le 100 ]] # uniform in [0, base * factor^0]
    [[ "${lines[1]}" == "0 2 200 - $RUN_ID.0 '-'" ]]
    [[ $(rcv_log r500 | wc -l) -eq 2 ]]
}

@test "429 with Retry-After: 1: next_delay_ms is 1000 and the retry comes at least 1 s later" {
    rcv_start r429 429:retry-after=1,200
    http_wf r429 /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID") == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ "${lines[0]}" == "0 1 429 1000 $RUN_ID.0 '-'" ]]
    [[ "${lines[1]}" == "0 2 200 - $RUN_ID.0 '-'" ]]
    run rcv_deliveries r429
    echo "$output"
    [[ ${#lines[@]} -eq 2 ]]
    t1=$(cut -d' ' -f2 <<<"${lines[0]}")
    t2=$(cut -d' ' -f2 <<<"${lines[1]}")
    echo "gap $(((t2 - t1) / 1000)) ms"
    [[ $((t2 - t1)) -ge 1000000 ]]
}

@test "400: no retry, one attempt, StepFailed and RunFailed" {
    rcv_start r400 400
    http_wf r400 /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID") == RunFailed ]]
    [[ $(run_types "$RUN_ID") == "RunStarted StepAttempted StepFailed RunFailed" ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 1 ]]
    [[ "${lines[0]}" == "0 1 400 - $RUN_ID.0 "* ]]
    [[ $(rcv_log r400 | wc -l) -eq 1 ]]
}

@test "a receiver that hangs: the attempt times out and is retried" {
    rcv_start hang hang,200
    http_wf hang /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID") == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 2 ]]
    read -r step att status delay _ <<<"${lines[0]}"
    [[ "$step $att $status" == "0 1 -" && $delay -le 100 ]]
    [[ "${lines[0]}" == *imeout* || "${lines[0]}" == *imed\ out* ]]
    [[ "${lines[1]}" == "0 2 200 - $RUN_ID.0 '-'" ]]
}

@test "attempts exhausted: 4 attempts with growing bounds, then RunFailed" {
    rcv_start r503 503
    http_wf r503 /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID" 40) == RunFailed ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 4 ]]
    bound=100
    for i in 0 1 2; do
        read -r step att status delay _ <<<"${lines[$i]}"
        [[ "$att $status" == "$((i + 1)) 503" && $delay -ge 0 && $delay -le $bound ]]
        bound=$((bound * 2))
    done
    read -r step att status delay _ <<<"${lines[3]}"
    [[ "$att $status $delay" == "4 503 -" ]]
}

@test "breaker: opens after 3 failures, the step waits without using an attempt, closes on success" {
    rcv_start brk 503,503,503,200
    http_wf brk /x
    run_start "$WF_ID"
    [[ $(run_wait_end "$RUN_ID" 30) == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 4 ]] # no attempt burned while the breaker was open
    run rcv_deliveries brk
    echo "$output"
    [[ ${#lines[@]} -eq 4 ]]
    t3=$(cut -d' ' -f2 <<<"${lines[2]}")
    t4=$(cut -d' ' -f2 <<<"${lines[3]}")
    echo "gap between the 3rd and 4th request: $(((t4 - t3) / 1000)) ms"
    [[ $((t4 - t3)) -ge 1400000 ]] # the cool-down (1.5 s), not the backoff (<= 400 ms)
    dest="http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/rcv-brk.port")"
    [[ $(wk_metric w1 "kcqrs_worker_breaker_transitions_total{destination=\"$dest\",to=\"open\"}") -eq 1 ]]
    [[ $(wk_metric w1 "kcqrs_worker_breaker_transitions_total{destination=\"$dest\",to=\"closed\"}") -eq 1 ]]
    [[ $(wk_metric w1 "kcqrs_worker_breaker_state{destination=\"$dest\"}") -eq 0 ]]
    wk_log w1 | grep -q "circuit breaker $dest: closed -> open"
    wk_log w1 | grep -q "circuit breaker $dest: half_open -> closed"
    [[ $(wk_metric w1 kcqrs_worker_breaker_waits_total) -ge 1 ]]
}

@test "email step: 451 retried, 250 delivered with the delivery id as Message-ID" {
    wf_create '{"name":"mail","actions":[{"type":"email","to":["ops@example.com"],"subject":"run {{payload.n}}","body_template":"hello {{payload.n}}"}]}'
    run_start "$WF_ID" '{"n":42}'
    [[ $(run_wait_end "$RUN_ID") == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 2 ]]
    [[ "${lines[0]}" == "0 1 451 "* ]]
    [[ "${lines[1]}" == "0 2 250 - $RUN_ID.0 '-'" ]]
    smtp_log mail
    smtp_log mail | python3 -c 'import json, sys
msgs = [json.loads(l) for l in sys.stdin]
assert [m["reply"] for m in msgs] == [451, 250], msgs
for m in msgs:
    assert m["rcpt"] == ["ops@example.com"], m
    assert m["headers"]["Message-ID"] == "<%s.0@kcqrs>" % sys.argv[1], m["headers"]
    assert m["headers"]["Subject"] == "run 42", m["headers"]
    assert m["body"].startswith("hello 42"), m["body"]' "$RUN_ID"
}

@test "a template naming a missing field: one failed attempt that says so, nothing sent" {
    rcv_start tpl 200
    http_wf tpl /x '"body_template":"{\"x\": \"{{payload.missing}}\"}"'
    run_start "$WF_ID" '{"n":1}'
    [[ $(run_wait_end "$RUN_ID") == RunFailed ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 1 && "${lines[0]}" == *payload.missing* ]]
    [[ $(rcv_log tpl | wc -l) -eq 0 ]]
}

@test "SIGKILL of the worker mid-run: the run completes after restart, recorded steps are not sent again" {
    # step 1 is held 3 s by the receiver: w1 waits up to 10 s, also after the restart
    w1_long_timeout
    rcv_start multi /a=200 /b=200:delay=3000 /c=200
    u=$(rcv_url multi)
    wf_create "{\"name\":\"three\",\"actions\":[{\"type\":\"http\",\"url\":\"$u/a\"},{\"type\":\"http\",\"url\":\"$u/b\"},{\"type\":\"http\",\"url\":\"$u/c\"}]}"
    run_start "$WF_ID"
    # kill the worker while step 1 is held
    kq_wait_for 20 bash -c "grep -q '\"path\":\"/b\"' '$BATS_FILE_TMPDIR/rcv-multi.log'"
    wk_kill w1
    KCQRS_WORKER_TIMEOUT_MS=10000 wk_start w1
    [[ $(run_wait_end "$RUN_ID" 60) == RunSucceeded ]]
    run rcv_deliveries multi
    echo "$output"
    [[ $(grep -c ' /a ' <<<"$output") -eq 1 ]] # its success was recorded: never again
    [[ $(grep -c ' /b ' <<<"$output") -eq 2 ]] # unrecorded: sent again ...
    [[ $(grep ' /b ' <<<"$output" | cut -d' ' -f1 | sort -u) == "$RUN_ID.1" ]] # ... same delivery id
    [[ $(grep -c ' /c ' <<<"$output") -eq 1 ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 3 ]]
    [[ "${lines[1]}" == "1 1 200 - $RUN_ID.1 '-'" ]]
}

all_succeeded() {
    local n
    n=$(runs_succeeded_count "$BATS_TEST_TMPDIR/runs")
    echo "$n of 24 runs succeeded"
    [[ $n -eq 24 ]]
}

both_assigned() {
    local a b
    a=$(wk_metric w1 kcqrs_worker_partitions_assigned)
    b=$(wk_metric w2 kcqrs_worker_partitions_assigned)
    echo "w1 $a w2 $b"
    [[ ${a:-0} -gt 0 && ${b:-0} -gt 0 && $((a + b)) -eq ${KCQRS_PARTITIONS:-6} ]]
}

@test "two workers in one group: 24 runs, every run executed exactly once" {
    wk_start w2
    # both hold partitions before the runs come
    kq_wait_for 40 both_assigned
    rcv_start two 200
    http_wf two /x
    runs=()
    for i in $(seq 1 24); do
        run_start "$WF_ID" "{\"i\":$i}" >/dev/null
        runs+=("$RUN_ID")
    done
    printf '%s\n' "${runs[@]}" >"$BATS_TEST_TMPDIR/runs"
    kq_wait_for 60 all_succeeded
    run rcv_deliveries two
    echo "$output"
    [[ ${#lines[@]} -eq 24 ]]
    [[ $(cut -d' ' -f1 <<<"$output" | sort -u | wc -l) -eq 24 ]]
    for r in "${runs[@]}"; do
        grep -q "^$r.0 " <<<"$output"
    done
    # both did some of the work
    [[ $(wk_metric w1 kcqrs_worker_attempts_total) -gt 0 ]]
    [[ $(wk_metric w2 kcqrs_worker_attempts_total) -gt 0 ]]
    wk_stop w2
}

@test "rebalance while an attempt is in flight: the revoked worker finishes and records it first" {
    # w1 owns every partition; the receiver holds the request 5 s; w2 joins meanwhile
    w1_long_timeout
    rcv_start slow 200:delay=5000
    http_wf slow /x
    run_start "$WF_ID"
    kq_wait_for 20 bash -c "[[ -s '$BATS_FILE_TMPDIR/rcv-slow.log' ]]"
    wk_start w2
    [[ $(run_wait_end "$RUN_ID" 30) == RunSucceeded ]]
    wk_log w1 | grep -q "waiting for 1 attempt(s) in flight"
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 1 && "${lines[0]}" == "0 1 200 - $RUN_ID.0 '-'" ]]
    sleep 1 # whoever owns the partition now has read the run: nothing is sent again
    [[ $(rcv_log slow | wc -l) -eq 1 ]]
    wk_stop w2
}

@test "kcqrs-commands down while an attempt is recorded: the record is retried until it is back" {
    w1_long_timeout
    rcv_start cdown 200:delay=2000
    http_wf cdown /x
    before=$(wk_metric w1 kcqrs_worker_record_retries_total)
    run_start "$WF_ID"
    kq_wait_for 20 bash -c "[[ -s '$BATS_FILE_TMPDIR/rcv-cdown.log' ]]"
    cmd_stop c1 # the request is held 2 s: its record finds nobody
    sleep 3
    [[ $(wk_metric w1 kcqrs_worker_commands_reachable) -eq 0 ]]
    [[ $(wk_metric w1 kcqrs_worker_record_retries_total) -gt $before ]]
    cmd_start c1
    [[ $(run_wait_end "$RUN_ID" 30) == RunSucceeded ]]
    run run_attempts "$RUN_ID"
    echo "$output"
    [[ ${#lines[@]} -eq 1 && "${lines[0]}" == "0 1 200 - $RUN_ID.0 '-'" ]]
    [[ $(rcv_log cdown | wc -l) -eq 1 ]] # the step was not sent again
}

@test "/health, /ready and /metrics of the worker; promtool accepts the metrics" {
    run curl -s -o /dev/null -w '%{http_code}' "$(wk_url w1)/health"
    [[ "$output" == 200 ]]
    run curl -s -o /dev/null -w '%{http_code}' "$(wk_url w1)/ready"
    [[ "$output" == 200 ]]
    run curl -s "$(wk_url w1)/metrics"
    for m in kcqrs_worker_runs_open kcqrs_worker_runs_in_flight kcqrs_worker_lag \
        'kcqrs_worker_records_total{result="ok"}' kcqrs_worker_in_flight \
        kcqrs_worker_commands_reachable; do
        grep -qF "$m " <<<"$output" || kq_fail "no $m in /metrics"
    done
    kq_check_metrics "$(wk_url w1)/metrics"
}

@test "GET /openapi.json on the admin server: the admin document, without a key" {
    local port
    port=$(cat "$BATS_FILE_TMPDIR/wk-w1.port")
    CODE=$(curl -sS -o "$BATS_TEST_TMPDIR/doc.json" -D "$BATS_TEST_TMPDIR/doc.h" -w '%{http_code}' \
        "http://127.0.0.1:$port/openapi.json")
    [[ "$CODE" == 200 ]]
    grep -qi '^content-type: application/json' "$BATS_TEST_TMPDIR/doc.h"
    cmp "$KQ_REPO/lib/openapi-admin.json" "$BATS_TEST_TMPDIR/doc.json"
}
