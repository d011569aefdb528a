#!/usr/bin/env bats
# ops_updown.bats — `make up` / `make down` judge a service by its answer
# (GET /health on its address), not by a pid file (issue #19 item 8). The
# service functions of ops/lib.sh that ops/up.sh and ops/down.sh run
# (kq_service_start, kq_service_stop) drive a real kcqrs-commands on the
# suite's broker, in a var/ directory of the test's own.
#
# The defect reproduced: `kill -9` of a service, then `make up` 0.3 s later
# printed "already running" because the pid file's pid was a zombie nobody
# had reaped yet (kill -0 succeeds on it), and left the service down. Here
# the first instance is started from a parent that never reaps (a subshell
# that execs `sleep`), so its pid stays a zombie as long as the test needs.
# With HTTPS (`make up HTTPS=1`: ops/lib.sh kq_tls_self_signed makes a local
# CA and certificate, kq_tls_init switches the checks to https with that CA)
# the same start, health check and stop work over https.

load helpers
load commands_helpers

setup_file() {
    cmd_make_keys
}

setup() {
    # shellcheck source=ops/lib.sh
    . "$KQ_REPO/ops/lib.sh"
    VAR="$BATS_TEST_TMPDIR/var"
    mkdir -p "$VAR"
    ADDR="127.0.0.1:$(kq_free_port)"
    export KCQRS_COMMANDS_ADDR="$ADDR" KCQRS_LMDB_DIR="$VAR/lmdb"
    export KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$(kq_free_port)"
    PARENT=""
}

teardown() {
    kq_service_stop kcqrs-commands "$ADDR" "$VAR" >/dev/null 2>&1 || true
    local n
    for n in kcqrs-projector kcqrs-projector-2; do
        [[ -f "$VAR/$n.addr" ]] &&
            kq_service_stop "$n" "$(cat "$VAR/$n.addr")" "$VAR" kcqrs-projector >/dev/null 2>&1
    done
    [[ -n "$PARENT" ]] && kill "$PARENT" 2>/dev/null || true
}

# start: kq_service_start as ops/up.sh runs it (fd 3 closed for bats).
start() {
    kq_service_start kcqrs-commands "$KCQRS_BIN/kcqrs-commands" "$ADDR" "$VAR" \
        >"$BATS_TEST_TMPDIR/start.out" 2>&1 3>&-
    local rc=$?
    cat "$BATS_TEST_TMPDIR/start.out"
    return $rc
}

pid_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }

@test "kill -9, then make up 0.3 s later: the zombie pid is not 'already running'; the service starts again" {
    # The first instance, from a parent that never reaps its children.
    (
        kq_service_start kcqrs-commands "$KCQRS_BIN/kcqrs-commands" "$ADDR" "$VAR"
        exec sleep 300
    ) >"$BATS_TEST_TMPDIR/first.out" 2>&1 3>&- &
    PARENT=$!
    kq_wait_for 90 grep -q "kcqrs-commands: ready on" "$BATS_TEST_TMPDIR/first.out"
    old=$(cat "$VAR/kcqrs-commands.pid")
    kq_pid_live "$old" kcqrs-commands
    kq_health "$ADDR"
    # its parent is the `sleep` now, which never reaps it
    kq_wait_for 10 bash -c "[[ \$(cat /proc/\$(ps -o ppid= -p $old | tr -d ' ')/comm) == sleep ]]"

    kill -9 "$old"
    sleep 0.3
    # The reproduction: the pid still exists (kill -0, what the pid file
    # check trusted, succeeds) but is a zombie, and nothing answers.
    kill -0 "$old"
    [[ "$(pid_state "$old")" == Z ]] || kq_fail "pid $old is '$(pid_state "$old")', expected a zombie"
    ! kq_health "$ADDR" || false

    run start
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"already running"* ]]
    [[ "$output" == *"kcqrs-commands: ready on http://$ADDR"* ]]
    new=$(cat "$VAR/kcqrs-commands.pid")
    [[ "$new" != "$old" ]]
    kq_pid_live "$new" kcqrs-commands
    kq_health "$ADDR"
    [[ "$(cat "$VAR/kcqrs-commands.addr")" == "$ADDR" ]]

    # make up again while it answers: left alone, no second process.
    run start
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"already running on http://$ADDR (pid $new)"* ]]
    [[ "$(cat "$VAR/kcqrs-commands.pid")" == "$new" ]]
    [[ "$(pgrep -c -f "^$KCQRS_BIN/kcqrs-commands\$" || true)" -ge 1 ]]
}

@test "make down stops what answers, even without a pid file; a stale pid file alone is 'not running'" {
    run start
    echo "$output"
    [ "$status" -eq 0 ]
    pid=$(cat "$VAR/kcqrs-commands.pid")
    rm -f "$VAR/kcqrs-commands.pid"

    run kq_service_stop kcqrs-commands "$ADDR" "$VAR"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"kcqrs-commands: stopped (pid $pid)"* ]]
    ! kq_pid_live "$pid" kcqrs-commands || false
    ! kq_health "$ADDR" || false

    # A pid file naming a process that is not the service (this shell's
    # sleep) is stale: nothing is killed.
    sleep 30 3>&- &
    other=$!
    echo "$other" >"$VAR/kcqrs-commands.pid"
    run kq_service_stop kcqrs-commands "$ADDR" "$VAR"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"not running (stale pid file removed)"* ]]
    kill -0 "$other"
    kill "$other"
    [[ ! -e "$VAR/kcqrs-commands.pid" ]]
}

@test "HTTPS (make up HTTPS=1): a local CA once; start, health checks and stop speak https with it" {
    kq_tls_self_signed "$VAR/tls"
    [ -s "$VAR/tls/ca.pem" ] && [ -s "$VAR/tls/server.pem" ]
    [[ "$(stat -c %a "$VAR/tls/server.key")" == 600 && "$(stat -c %a "$VAR/tls/ca.key")" == 600 ]]
    openssl verify -CAfile "$VAR/tls/ca.pem" "$VAR/tls/server.pem"
    # Made once: a second make up keeps the certificate.
    local sum
    sum=$(sha256sum <"$VAR/tls/server.pem")
    kq_tls_self_signed "$VAR/tls"
    [[ "$(sha256sum <"$VAR/tls/server.pem")" == "$sum" ]]

    export KCQRS_HTTP_TLS_CERT="$VAR/tls/server.pem" KCQRS_HTTP_TLS_KEY="$VAR/tls/server.key"
    export KCQRS_HTTP_TLS_CA="$VAR/tls/ca.pem"
    kq_tls_init
    [ "$KQ_SCHEME" = https ]
    run start
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"kcqrs-commands: ready on https://$ADDR"* ]]
    # The service speaks https with a certificate the local CA signed, and only that.
    curl -sSf --max-time 5 --cacert "$VAR/tls/ca.pem" -o /dev/null "https://$ADDR/ready"
    curl -sSf --max-time 5 --cacert "$VAR/tls/ca.pem" -o /dev/null "https://localhost:${ADDR##*:}/health"
    run curl -sS --max-time 5 -o /dev/null "https://$ADDR/health"
    [ "$status" -eq 60 ]
    kq_health "$ADDR"
    run start
    echo "$output"
    [[ "$output" == *"already running on https://$ADDR (pid $(cat "$VAR/kcqrs-commands.pid"))"* ]]
    # make down finds it by its https answer even without the pid file.
    rm -f "$VAR/kcqrs-commands.pid"
    run kq_service_stop kcqrs-commands "$ADDR" "$VAR"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"kcqrs-commands: stopped (pid "* ]]
    ! kq_health "$ADDR" || false
    # Back to plain settings: http again.
    unset KCQRS_HTTP_TLS_CERT KCQRS_HTTP_TLS_KEY
    kq_tls_init
    [ "$KQ_SCHEME" = http ] && [ "$(kq_url "$ADDR")" = "http://$ADDR" ]
}

# status_json: ops/status.sh --json on this test's var/ (exit status in STATUS_RC).
status_json() {
    STATUS_RC=0
    KCQRS_VAR_DIR="$VAR" "$KQ_REPO/ops/status.sh" --json >"$BATS_TEST_TMPDIR/status.json" 3>&- || STATUS_RC=$?
    cat "$BATS_TEST_TMPDIR/status.json"
}
# sj EXPR: python over the last status (`s` = services by name); exit 1 when false.
sj() {
    python3 -c 'import json, sys
s = {x["name"]: x for x in json.load(open(sys.argv[2]))["services"]}
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" "$BATS_TEST_TMPDIR/status.json" || kq_fail "status: not $1"
}
projector_roles() { status_json >/dev/null; sj "$1"; }

@test "make status (ops/status.sh --json): URL, pid, role and health of each service; two projectors: pg active and standby, then a takeover after kill -9" {
    kq_fresh_db ops_status
    start
    # two projectors as `make up QUERIES=2` starts them: their own LMDB and admin port, --target all
    P1="127.0.0.1:$(kq_free_port)" P2="127.0.0.1:$(kq_free_port)"
    KCQRS_LMDB_DIR="$VAR/lmdb" KCQRS_PROJECTOR_ADDR="$P1" kq_service_start kcqrs-projector \
        "$KCQRS_BIN/kcqrs-projector" "$P1" "$VAR" kcqrs-projector --target all 3>&-
    KCQRS_LMDB_DIR="$VAR/lmdb-2" KCQRS_PROJECTOR_ADDR="$P2" kq_service_start kcqrs-projector-2 \
        "$KCQRS_BIN/kcqrs-projector" "$P2" "$VAR" kcqrs-projector --target all 3>&-
    status_json
    # kcqrs-query and kcqrs-worker are not running: listed as down, exit status 1
    [ "$STATUS_RC" -eq 1 ]
    sj 's["kcqrs-commands"]["health"] == "up" and s["kcqrs-commands"]["ready"] is True'
    sj 's["kcqrs-commands"]["pid"] == int(open("'"$VAR"'/kcqrs-commands.pid").read())'
    sj 's["kcqrs-commands"]["url"] == "http://'"$ADDR"'" and s["kcqrs-commands"]["role"].startswith("writer")'
    sj 's["kcqrs-query"]["health"] == "down" and s["kcqrs-query"]["pid"] is None and s["kcqrs-worker"]["health"] == "down"'
    sj 's["kcqrs-projector"]["targets"] == {"lmdb": "active", "pg": "active"} and s["kcqrs-projector"]["url"] == "http://'"$P1"'"'
    sj 's["kcqrs-projector-2"]["targets"] == {"lmdb": "active", "pg": "standby"} and s["kcqrs-projector-2"]["ready"] is True'
    sj 's["kcqrs-projector-2"]["pid"] == int(open("'"$VAR"'/kcqrs-projector-2.pid").read()) and s["kcqrs-projector-2"]["program"] == "kcqrs-projector"'
    # the human form says the same
    run env KCQRS_VAR_DIR="$VAR" "$KQ_REPO/ops/status.sh"
    echo "$output"
    [[ "$output" == *"kcqrs-projector-2"*"projector: lmdb active, pg standby"* ]]

    kill -9 "$(cat "$VAR/kcqrs-projector.pid")"
    kq_wait_for 10 projector_roles 's["kcqrs-projector-2"]["targets"] == {"lmdb": "active", "pg": "active"}'
    sj 's["kcqrs-projector"]["health"] == "down"'
    # make down's stop finds an instance by its program
    run kq_service_stop kcqrs-projector-2 "$P2" "$VAR" kcqrs-projector
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"kcqrs-projector-2: stopped"* ]]
}
