# tests/e2e/worker_helpers.bash — kcqrs-worker instances, scripted receivers
# and run inspection for tests/e2e/worker.bats. Load after helpers and
# commands_helpers.
#
# wk_make_key: a key of role worker (name e2e-worker) appended to
#   $KCQRS_KEYS_FILE (cmd_make_keys first), written to
#   $BATS_FILE_TMPDIR/worker.key; exports KCQRS_WORKER_KEY_FILE.
# wk_start NAME: start (or restart on the same admin port) worker NAME with
#   the KCQRS_WORKER_* settings of the environment, commands at $CMD_INTERNAL_URL
#   (kcqrs-commands' internal listener; $CMD_URL when unset);
#   waits for /ready. wk_url, wk_pid, wk_log, wk_kill (SIGKILL), wk_stop
#   (SIGTERM), wk_stop_all (fails on a crash or a sanitizer report), wk_metric.
# rcv_start NAME [--secret S] SCRIPT...: a kq_receiver; rcv_url NAME prints
#   its base URL, rcv_log NAME its JSON-lines log, rcv_stop_all stops them.
# smtp_start NAME SCRIPT: a kq_smtp_sink; smtp_url NAME, smtp_log NAME.
# wf_create JSON: POST /api/v1/workflows (writer key), sets WF_ID.
# run_start WF_ID [BODY]: POST /api/v1/workflows/{id}/runs, sets RUN_ID.
# run_events RUN_ID: the run's events (kcqrs-audit query, one JSON per line).
# run_wait_end RUN_ID [SECONDS]: until RunSucceeded or RunFailed is in the
#   log; prints the final event type.

wk_make_key() {
    local k
    k=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-worker --roles worker --file "$KCQRS_KEYS_FILE") ||
        return 1
    (umask 077 && echo "$k" >"$BATS_FILE_TMPDIR/worker.key")
    export KCQRS_WORKER_KEY_FILE="$BATS_FILE_TMPDIR/worker.key"
}

wk_url() { echo "${KQ_HTTP_SCHEME:-http}://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/wk-$1.port")"; }
wk_pid() { cat "$BATS_FILE_TMPDIR/wk-$1.pid"; }
wk_log() { cat "$BATS_FILE_TMPDIR/wk-$1.log.old" "$BATS_FILE_TMPDIR/wk-$1.log" 2>/dev/null; }

wk_start() {
    local name="$1" port pid
    if [[ -f "$BATS_FILE_TMPDIR/wk-$name.port" ]]; then
        port=$(cat "$BATS_FILE_TMPDIR/wk-$name.port")
    else
        port=$(kq_free_port)
        echo "$port" >"$BATS_FILE_TMPDIR/wk-$name.port"
    fi
    [[ -f "$BATS_FILE_TMPDIR/wk-$name.log" ]] &&
        cat "$BATS_FILE_TMPDIR/wk-$name.log" >>"$BATS_FILE_TMPDIR/wk-$name.log.old"
    pid=$(KCQRS_WORKER_ADDR="127.0.0.1:$port" KCQRS_WORKER_COMMANDS_URL="${CMD_INTERNAL_URL:-$CMD_URL}" \
        kq_bg "$BATS_FILE_TMPDIR/wk-$name.log" "$KCQRS_BIN/kcqrs-worker")
    echo "$pid" >"$BATS_FILE_TMPDIR/wk-$name.pid"
    echo "$name" >>"$BATS_FILE_TMPDIR/wk-instances"
    # Ready, and the answer is this process's: its log names the port it bound (logged before
    # it can be ready). A port picked free can be bound by someone else before the worker
    # binds it; then another server's /ready must not pass for the worker's.
    if ! kq_wait_for 60 bash -c "kill -0 $pid && grep -q '(port $port)' '$BATS_FILE_TMPDIR/wk-$name.log' && [[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '${KQ_HTTP_SCHEME:-http}://127.0.0.1:$port/ready') == 200 ]]"; then
        echo "kcqrs-worker $name did not become ready; its log:" >&2
        tail -n 40 "$BATS_FILE_TMPDIR/wk-$name.log" >&2
        return 1
    fi
}

wk_kill() {
    local pid
    pid=$(wk_pid "$1")
    touch "$BATS_FILE_TMPDIR/wk-$1.killed.$pid"
    kq_kill "$pid"
}

wk_stop() {
    local pid
    pid=$(wk_pid "$1")
    if ! kill -0 "$pid" 2>/dev/null && [[ ! -e "$BATS_FILE_TMPDIR/wk-$1.killed.$pid" ]]; then
        echo "$1" >>"$BATS_FILE_TMPDIR/wk-crashed"
    fi
    touch "$BATS_FILE_TMPDIR/wk-$1.killed.$pid" # stopped on purpose: not a crash later
    kq_stop "$pid" "${2:-20}"
}

wk_stop_all() {
    local name rc=0
    [[ -f "$BATS_FILE_TMPDIR/wk-instances" ]] || return 0
    for name in $(sort -u "$BATS_FILE_TMPDIR/wk-instances"); do
        wk_stop "$name" 20
    done
    for name in $(sort -u "$BATS_FILE_TMPDIR/wk-instances"); do
        if grep -qx "$name" "$BATS_FILE_TMPDIR/wk-crashed" 2>/dev/null ||
            wk_log "$name" | grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'; then
            echo "kcqrs-worker $name crashed or has a sanitizer report; its log:" >&2
            wk_log "$name" | grep -E -A 24 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' | head -n 80 >&2
            wk_log "$name" | tail -n 30 >&2
            rc=1
        fi
    done
    return $rc
}

# wk_metric NAME SERIES: the value of one sample line of worker NAME's /metrics
# (SERIES is the whole series name with labels, e.g. 'kcqrs_worker_runs_open').
wk_metric() {
    curl -s --max-time 5 "$(wk_url "$1")/metrics" | awk -v s="$2" '$1 == s { print $2; exit }'
}

rcv_start() {
    local name="$1" pid
    shift
    rm -f "$BATS_FILE_TMPDIR/rcv-$name.port"
    pid=$(kq_bg "$BATS_FILE_TMPDIR/rcv-$name.out" "$KCQRS_TOOLS/kq_receiver" \
        --port-file "$BATS_FILE_TMPDIR/rcv-$name.port" --log "$BATS_FILE_TMPDIR/rcv-$name.log" "$@")
    echo "$pid" >>"$BATS_FILE_TMPDIR/rcv-pids"
    kq_wait_for 10 test -s "$BATS_FILE_TMPDIR/rcv-$name.port"
    touch "$BATS_FILE_TMPDIR/rcv-$name.log"
}
rcv_url() { echo "http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/rcv-$1.port")"; }
rcv_log() { cat "$BATS_FILE_TMPDIR/rcv-$1.log"; }

smtp_start() {
    local name="$1" pid
    shift
    rm -f "$BATS_FILE_TMPDIR/smtp-$name.port"
    pid=$(kq_bg "$BATS_FILE_TMPDIR/smtp-$name.out" "$KCQRS_TOOLS/kq_smtp_sink" \
        --port-file "$BATS_FILE_TMPDIR/smtp-$name.port" --log "$BATS_FILE_TMPDIR/smtp-$name.log" "$@")
    echo "$pid" >>"$BATS_FILE_TMPDIR/rcv-pids"
    kq_wait_for 10 test -s "$BATS_FILE_TMPDIR/smtp-$name.port"
    touch "$BATS_FILE_TMPDIR/smtp-$name.log"
}
smtp_url() { echo "smtp://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/smtp-$1.port")"; }
smtp_log() { cat "$BATS_FILE_TMPDIR/smtp-$1.log"; }

rcv_stop_all() {
    local pid
    [[ -f "$BATS_FILE_TMPDIR/rcv-pids" ]] || return 0
    for pid in $(cat "$BATS_FILE_TMPDIR/rcv-pids"); do
        kq_stop "$pid" 5
    done
}

wf_create() {
    req POST /api/v1/workflows "$1"
    [[ "$CODE" == 201 ]] || kq_fail "workflow create answered $CODE: $BODY" || return 1
    WF_ID=$(jf 'd["id"]')
}

run_start() {
    req POST "/api/v1/workflows/$1/runs" "${2:-{\}}"
    [[ "$CODE" == 202 ]] || kq_fail "run start answered $CODE: $BODY" || return 1
    RUN_ID=$(jf 'd["run_id"]')
}

run_events() {
    "$KCQRS_BIN/kcqrs-audit" query --aggregate-type run --aggregate-id "$1" --format json
}

# run_end RUN_ID: print RunSucceeded / RunFailed, fail while the run is open.
run_end() {
    run_events "$1" | python3 -c 'import json, sys
for line in sys.stdin:
    t = json.loads(line)["payload_type"]
    if t in ("RunSucceeded", "RunFailed"):
        print(t); sys.exit(0)
sys.exit(1)'
}

run_wait_end() {
    kq_wait_for "${2:-30}" run_end "$1" || return 1
    run_end "$1"
}

# run_attempts RUN_ID: one line per StepAttempted: step attempt status_code|- next_delay_ms|- error|-
run_attempts() {
    run_events "$1" | python3 -c 'import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["payload_type"] != "StepAttempted":
        continue
    p = e["payload"]
    print(p.get("step", 0), p.get("attempt", 0), p.get("status_code", "-"), p.get("next_delay_ms", "-"),
          p.get("delivery_id"), repr(p.get("error", "-")))'
}

# run_types RUN_ID: the event types of the run, space-separated, in order.
run_types() {
    run_events "$1" | python3 -c 'import json, sys
print(" ".join(json.loads(l)["payload_type"] for l in sys.stdin))'
}

# rcv_deliveries NAME: one line per request: "<delivery id> <t_us> <path> <signature_ok>".
rcv_deliveries() {
    rcv_log "$1" | python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    h = {k.lower(): v for k, v in r["headers"].items()}
    print(h.get("x-kcqrs-delivery", "-"), r["t_us"], r["path"], r.get("signature_ok", "-"))'
}

# runs_succeeded_count FILE: how many of the run ids in FILE (one a line) have
# a RunSucceeded in the log (one kcqrs-audit pass over the run topic).
runs_succeeded_count() {
    "$KCQRS_BIN/kcqrs-audit" query --aggregate-type run --event-type RunSucceeded --format json |
        python3 -c 'import json, sys
ids = set(open(sys.argv[1]).read().split())
print(len(ids & {json.loads(l)["aggregate_id"] for l in sys.stdin}))' "$1"
}
