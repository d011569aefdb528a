#!/usr/bin/env bats
# kafka_sasl.bats — kcqrs against a broker that only speaks SASL_SSL
# (SCRAM-SHA-512 users created when its storage is formatted, certificates made
# with openssl by ops/kafka.sh), through KCQRS_KAFKA_PROPERTIES: it works end to
# end with the generated client properties; the password is never printed; a
# wrong password or a CA that did not sign the broker's certificate gives a
# clear error line at start and /ready 503 naming the cause ("Kafka
# authentication failed", "certificate verify failed", not "Timed out"), no
# crash; the test and benchmark tools and kcqrs-audit read through the same
# file; a bad properties file stops a binary at start naming FILE:LINE. One
# broker start for the file.

load helpers
load commands_helpers
load cluster_helpers

setup_file() {
    local dir ports
    dir=$(kq_cluster_dir "$KCQRS_TOPIC_PREFIX")
    mkdir -p "$dir"
    ports="$(kq_free_port) $(kq_free_port)"
    KQ_KAFKA_START_TIMEOUT=${KQ_KAFKA_START_TIMEOUT:-180} KQ_KAFKA_SECURITY=sasl_ssl \
        "$KQ_REPO/ops/kafka.sh" start "$dir" ${ports} \
        >"$BATS_FILE_TMPDIR/kafka.start.log" 2>&1 3>&- ||
        { cat "$BATS_FILE_TMPDIR/kafka.start.log" >&2; return 1; }
    export SASL_DIR="$dir"
    export KCQRS_BROKERS="127.0.0.1:${ports%% *}"
    export KCQRS_KAFKA_PROPERTIES="$dir/client.properties"
    kq_fresh_db sasl
    cmd_make_keys
}

teardown_file() {
    local rc=0
    [[ -f "$BATS_FILE_TMPDIR/q.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/q.pid")" 10
    [[ -f "$BATS_FILE_TMPDIR/proj.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/proj.pid")" 10
    [[ -f "$BATS_FILE_TMPDIR/projwrong.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/projwrong.pid")" 10
    cmd_stop_all || rc=1
    "$KQ_REPO/ops/kafka.sh" stop "$SASL_DIR" >/dev/null 2>&1 3>&- || true
    return $rc
}

password() { cat "$SASL_DIR/tls/kcqrs.password"; }

# never_printed FILE...: the SCRAM password appears in none of them.
never_printed() {
    local pw
    pw=$(password)
    [ -n "$pw" ]
    ! grep -qF -- "$pw" "$@"
}

@test "SASL_SSL: create and read back through the generated client properties" {
    [[ "$(cat "$KCQRS_KAFKA_PROPERTIES")" == *"security.protocol=SASL_SSL"* ]]
    run kq_tool kq_topics create
    echo "$output"
    [ "$status" -eq 0 ]
    cmd_start main 90
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    local qport
    qport=$(kq_free_port)
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_PROJECTOR_ADDR="127.0.0.1:$(kq_free_port)" \
        kq_bg "$BATS_FILE_TMPDIR/proj.log" "$KCQRS_BIN/kcqrs-projector" >"$BATS_FILE_TMPDIR/proj.pid"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$qport" \
        kq_bg "$BATS_FILE_TMPDIR/q.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/q.pid"
    # The first transactions on a fresh broker may be slow on a loaded machine:
    # retry a 503 (the same Idempotency-Key, so a retry never creates twice).
    local i
    for i in $(seq 1 30); do
        req POST /api/v1/resources '{"id":"sasl-1","name":"over TLS"}' -H 'Idempotency-Key: sasl-1'
        [[ "$CODE" == 201 ]] && break
        [[ "$CODE" == 503 ]] || kq_fail "create: $CODE $BODY"
        sleep 1
    done
    [ "$CODE" = 201 ]
    kq_wait_for 60 curl -fsS -o "$BATS_TEST_TMPDIR/got" -H "Authorization: Bearer $KQ_KEY_READER" \
        "http://127.0.0.1:$qport/api/v1/resources/sasl-1"
    grep -q '"name":"over TLS"' "$BATS_TEST_TMPDIR/got"
    # The password is in no log, not in /status, not in --help.
    curl -s -H "Authorization: Bearer $KQ_KEY_READER" "http://127.0.0.1:$qport/api/v1/status" \
        >"$BATS_TEST_TMPDIR/status"
    "$KCQRS_BIN/kcqrs-commands" --help >"$BATS_TEST_TMPDIR/help"
    never_printed "$BATS_FILE_TMPDIR/main.log" "$BATS_FILE_TMPDIR/proj.log" \
        "$BATS_FILE_TMPDIR/q.log" "$BATS_TEST_TMPDIR/status" "$BATS_TEST_TMPDIR/help"
    grep -q 'kafka properties from .*sasl.username=kcqrs sasl.password=\[redacted\]' \
        "$BATS_FILE_TMPDIR/main.log"
}

@test "kcqrs-events cat reads the SASL_SSL broker through KCQRS_KAFKA_PROPERTIES (and cannot without it)" {
    run "$KCQRS_BIN/kcqrs-events" cat resource
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"aggregate_id":"sasl-1"'* ]]
    KCQRS_KAFKA_PROPERTIES=none KCQRS_KAFKA_TIMEOUT_MS=2000 run "$KCQRS_BIN/kcqrs-events" cat resource
    [ "$status" -eq 1 ]
    [[ "$output" != *"sasl-1"* ]]
}

# start_bad NAME PROPERTIES: a kcqrs-commands instance with PROPERTIES (left
# running: teardown_file stops it and fails if it crashed).
start_bad() {
    KCQRS_KAFKA_TIMEOUT_MS=3000 KCQRS_KAFKA_PROPERTIES="$2" CMD_NO_WAIT=1 cmd_start "$1"
}

@test "a wrong password: a clear error line at start, /ready 503, no crash" {
    sed 's/^sasl.password=.*/sasl.password=not-the-password-42/' "$KCQRS_KAFKA_PROPERTIES" \
        >"$BATS_FILE_TMPDIR/wrong.properties"
    start_bad wrongpw "$BATS_FILE_TMPDIR/wrong.properties"
    kq_wait_for 20 grep -q 'SASL authentication error: Authentication failed' "$BATS_FILE_TMPDIR/wrongpw.log"
    # /ready and the writer's retry line name the cause, not a bare timeout.
    kq_wait_for 30 bash -c "curl -s --max-time 5 '$(cmd_url wrongpw)/ready' | grep -q 'Kafka authentication failed'"
    run curl -s -w ' %{http_code}' --max-time 5 "$(cmd_url wrongpw)/ready"
    echo "$output"
    [[ "$output" == *' 503' ]]
    [[ "$output" == *'Kafka authentication failed (check sasl.username'* ]]
    [[ "$output" != *'Timed out'* ]]
    kq_wait_for 30 grep -q 'writer not ready: Kafka authentication failed' "$BATS_FILE_TMPDIR/wrongpw.log"
    ! grep 'writer not ready:' "$BATS_FILE_TMPDIR/wrongpw.log" | grep -q 'Timed out' || false
    kill -0 "$(cmd_pid wrongpw)"
    ! grep -qF 'not-the-password-42' "$BATS_FILE_TMPDIR/wrongpw.log" || false
    never_printed "$BATS_FILE_TMPDIR/wrongpw.log"
    # The projector's /ready names it too (its consumer never gets the topics).
    local pport
    pport=$(kq_free_port)
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-wrongpw"
    KCQRS_KAFKA_PROPERTIES="$BATS_FILE_TMPDIR/wrong.properties" KCQRS_KAFKA_TIMEOUT_MS=3000 \
        KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-wrongpw" KCQRS_PROJECTOR_ADDR="127.0.0.1:$pport" \
        kq_bg "$BATS_FILE_TMPDIR/projwrong.log" "$KCQRS_BIN/kcqrs-projector" >"$BATS_FILE_TMPDIR/projwrong.pid"
    kq_wait_for 30 bash -c "curl -s --max-time 5 'http://127.0.0.1:$pport/ready' | grep -q 'Kafka authentication failed'"
    run curl -s -w ' %{http_code}' --max-time 5 "http://127.0.0.1:$pport/ready"
    echo "$output"
    [[ "$output" == *' 503' ]]
    kill -0 "$(cat "$BATS_FILE_TMPDIR/projwrong.pid")"
    never_printed "$BATS_FILE_TMPDIR/projwrong.log"
}

@test "an untrusted CA: a clear error line at start, /ready 503, no crash" {
    (cd "$BATS_FILE_TMPDIR" && openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -subj "/CN=someone else" -keyout other.key -out other-ca.pem 2>/dev/null)
    sed "s|^ssl.ca.location=.*|ssl.ca.location=$BATS_FILE_TMPDIR/other-ca.pem|" \
        "$KCQRS_KAFKA_PROPERTIES" >"$BATS_FILE_TMPDIR/ca.properties"
    start_bad badca "$BATS_FILE_TMPDIR/ca.properties"
    kq_wait_for 20 grep -q 'certificate verify failed' "$BATS_FILE_TMPDIR/badca.log"
    kq_wait_for 30 bash -c "curl -s --max-time 5 '$(cmd_url badca)/ready' | grep -q 'certificate verify failed'"
    run curl -s -w ' %{http_code}' --max-time 5 "$(cmd_url badca)/ready"
    echo "$output"
    [[ "$output" == *' 503' ]]
    [[ "$output" == *'Kafka broker certificate verify failed (check ssl.ca.location'* ]]
    [[ "$output" != *'Timed out'* ]]
    kq_wait_for 30 grep -q 'writer not ready: Kafka broker certificate verify failed' "$BATS_FILE_TMPDIR/badca.log"
    ! grep 'writer not ready:' "$BATS_FILE_TMPDIR/badca.log" | grep -q 'Timed out' || false
    kill -0 "$(cmd_pid badca)"
}

@test "a bad properties file stops every binary at start with FILE:LINE" {
    printf '# ok\nsecurity.protocl=SASL_SSL\n' >"$BATS_FILE_TMPDIR/typo.properties"
    local b args
    for b in kcqrs-commands kcqrs-projector kcqrs-query kcqrs-worker "kcqrs-replay verify --target lmdb" \
        "kcqrs-audit verify-chain"; do
        read -r -a args <<<"$b"
        args[0]="$KCQRS_BIN/${args[0]}"
        run env KCQRS_KAFKA_PROPERTIES="$BATS_FILE_TMPDIR/typo.properties" timeout 20 "${args[@]}"
        echo "$b: $status: $output"
        [ "$status" -ne 0 ]
        [ "$status" -ne 124 ]
        [[ "$output" == *"typo.properties:2: unknown librdkafka property 'security.protocl'"* ]]
    done
    printf 'bootstrap.servers=elsewhere:9092\n' >"$BATS_FILE_TMPDIR/owned.properties"
    run env KCQRS_KAFKA_PROPERTIES="$BATS_FILE_TMPDIR/owned.properties" "$KCQRS_BIN/kcqrs-commands"
    [ "$status" -ne 0 ]
    [[ "$output" == *"owned.properties:1: 'bootstrap.servers' is set by kcqrs (set KCQRS_BROKERS instead)"* ]]
}

@test "tools read KCQRS_KAFKA_PROPERTIES too: kq_faults, bench_kafka, kcqrs-audit, kcqrs-replay" {
    # kq_faults (the fault campaign's load, recorder and checker) sees the topics.
    run kq_tool kq_faults meta
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$KCQRS_TOPIC_PREFIX.resource.events 0 "* ]]
    # bench_kafka's clients (raw librdkafka) go through the file as well (the
    # broker speaks nothing but SASL_SSL).
    run timeout 120 "$KQ_REPO/build/bench/bench_kafka" --brokers "$KCQRS_BROKERS" --messages 100 \
        --lat-messages 10 --partitions 1 --phases produce
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"RESULT name=kafka.produce "* ]]
    # kcqrs-audit and kcqrs-replay read the log over SASL_SSL (the create of the first test).
    run timeout 120 "$KCQRS_BIN/kcqrs-audit" query --aggregate-id sasl-1
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *ResourceCreated* && "$output" == *sasl-1* ]]
    run timeout 120 "$KCQRS_BIN/kcqrs-audit" verify-chain
    echo "$output"
    [ "$status" -eq 0 ]
    run env KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" timeout 120 "$KCQRS_BIN/kcqrs-replay" verify --target lmdb
    echo "$output"
    [ "$status" -eq 0 ]
}
