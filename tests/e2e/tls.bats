#!/usr/bin/env bats
# tests/e2e/tls.bats — HTTPS on kcqrs-commands (public and internal listener)
# and kcqrs-worker's record client over https with KCQRS_HTTP_TLS_CA (issue #13
# item 3), plus X-Forwarded-For from a trusted proxy in the access log.
#
# setup_file makes a CA, a server certificate for 127.0.0.1 signed by it and an
# unrelated second CA with openssl, then starts one kcqrs-commands (c1) with
# KCQRS_HTTP_TLS_CERT/KEY and KCQRS_HTTP_TRUSTED_PROXIES=127.0.0.1/32. The curl
# calls of the helpers trust the test CA through CURL_CA_BUNDLE.

load helpers
load commands_helpers
load worker_helpers

PKI() { echo "$BATS_FILE_TMPDIR/pki"; }

setup_file() {
    local d
    d=$(PKI)
    mkdir -p "$d"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kcqrs e2e CA" \
            -keyout "$d/ca.key" -out "$d/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$d/server.key" -out "$d/server.csr" &&
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/ext" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -days 2 -extfile "$d/ext" -out "$d/server.pem" &&
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
                -keyout "$d/other.key" -out "$d/other.pem"
    } >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
    export KCQRS_HTTP_TLS_CERT="$d/server.pem" KCQRS_HTTP_TLS_KEY="$d/server.key"
    export KCQRS_HTTP_TRUSTED_PROXIES=127.0.0.1/32 KQ_HTTP_SCHEME=https CURL_CA_BUNDLE="$d/ca.pem"
    cmd_make_keys
    wk_make_key
    cmd_start c1
    echo "$CMD_URL" >"$BATS_FILE_TMPDIR/cmd_url"
    echo "$CMD_INTERNAL_URL" >"$BATS_FILE_TMPDIR/cmd_internal_url"
}

teardown_file() {
    local rc=0
    wk_stop_all || rc=1
    cmd_stop_all || rc=1
    return $rc
}

setup() {
    CMD_URL=$(cat "$BATS_FILE_TMPDIR/cmd_url")
    CMD_INTERNAL_URL=$(cat "$BATS_FILE_TMPDIR/cmd_internal_url")
}

@test "HTTPS on both listeners: a create over the public port, a read of /ready on the internal one" {
    [[ "$CMD_URL" == https://* && "$CMD_INTERNAL_URL" == https://* ]]
    req POST /api/v1/resources '{"name":"over tls"}'
    [ "$CODE" = 201 ]
    jcheck 'd["version"] == 1'
    run curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$CMD_INTERNAL_URL/ready"
    [ "$output" = 200 ]
    # The certificate is checked: another CA is refused (curl: 60, peer certificate).
    run curl -sS -o /dev/null --max-time 10 --cacert "$(PKI)/other.pem" "$CMD_URL/health"
    [ "$status" = 60 ]
}

@test "plain HTTP to the HTTPS port is closed at once; a silent connection at the header deadline" {
    local port t0 t1
    port=${CMD_URL##*:}
    t0=$(date +%s%N)
    run curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$port/health"
    t1=$(date +%s%N)
    [ "$status" != 0 ]
    [ $(((t1 - t0) / 1000000)) -lt 5000 ]
    # No ClientHello at all: the handshake is part of the head and gets its deadline.
    local name=c2
    KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX.c2" KCQRS_HTTP_HEADER_TIMEOUT_MS=1000 cmd_start "$name"
    port=${CMD_URL##*:}
    t0=$(date +%s%N)
    run timeout 10 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(8)
print(len(s.recv(100)))' "$port"
    t1=$(date +%s%N)
    echo "recv: $output after $(((t1 - t0) / 1000000)) ms"
    [ "$status" = 0 ]
    [ "$output" = 0 ]
    [ $(((t1 - t0) / 1000000)) -ge 800 ]
    [ $(((t1 - t0) / 1000000)) -lt 5000 ]
}

@test "kcqrs-worker records over https with KCQRS_HTTP_TLS_CA (and is not ready without it)" {
    # Its own admin port speaks HTTPS too (the same KCQRS_HTTP_TLS_* settings).
    KCQRS_HTTP_TLS_CA="$(PKI)/ca.pem" wk_start w1
    run curl -sS --max-time 5 "$(wk_url w1)/ready"
    echo "$output"
    [[ "$output" == *ready* ]]
    # the line is logged once the service runs, which can be just after /ready answers
    kq_wait_for 10 grep -q "https://127.0.0.1:${CMD_INTERNAL_URL##*:}" "$BATS_FILE_TMPDIR/wk-w1.log" ||
        kq_fail "the worker does not name the internal https URL: $(wk_log w1 | head -5)"
    wk_stop w1
    # Without the CA the record client cannot verify kcqrs-commands: never ready.
    local port
    port=$(kq_free_port)
    local pid
    pid=$(KCQRS_WORKER_ADDR="127.0.0.1:$port" KCQRS_WORKER_COMMANDS_URL="$CMD_INTERNAL_URL" \
        kq_bg "$BATS_FILE_TMPDIR/wk-noca.log" "$KCQRS_BIN/kcqrs-worker")
    sleep 6
    run curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$port/ready"
    kq_stop "$pid" 10
    echo "ready without the CA: $output"
    [ "$output" = 503 ]
}

@test "X-Forwarded-For from a trusted proxy names the client in the access log" {
    # (not /health: probes are logged at debug)
    req GET /no-such-route - -H 'X-Forwarded-For: 198.51.100.23, 127.0.0.1'
    [ "$CODE" = 404 ]
    kq_wait_for 5 grep -q 'http GET /no-such-route 404 .* client=198.51.100.23' "$BATS_FILE_TMPDIR/c1.log"
}
