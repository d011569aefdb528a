#!/usr/bin/env bats
# commands_kafka_down.bats — Kafka unreachable: commands answer 503 with
# Retry-After within a bounded time (never hang), and kcqrs-commands recovers
# by itself when the broker returns; under load, every acknowledged command is
# in the log exactly once.
#
# The suite's broker is shared by every file, so this file starts a private
# broker of its own (ops/kafka.sh, free ports, in $BATS_FILE_TMPDIR), points
# one kcqrs-commands at it and stops and restarts that broker. With
# KCQRS_KAFKA_TIMEOUT_MS=5000 the contract's bound is 3 x 5 s = 15 s.

load helpers
load commands_helpers

BOUND_S=15
RECOVER_S=60

kafka_dir() { echo "$BATS_FILE_TMPDIR/kafka"; }

private_broker_start() {
    local p
    read -r -a p <"$BATS_FILE_TMPDIR/kafka.ports"
    "$KQ_REPO/ops/kafka.sh" start "$(kafka_dir)" "${p[0]}" "${p[1]}" >>"$BATS_FILE_TMPDIR/kafka.ops.log" 2>&1 3>&-
}

private_broker_stop() {
    "$KQ_REPO/ops/kafka.sh" stop "$(kafka_dir)" >>"$BATS_FILE_TMPDIR/kafka.ops.log" 2>&1 3>&-
}

setup_file() {
    local ports attempt started=0
    # New ports when the chosen ones were taken in the meantime (as setup_suite).
    for attempt in 1 2 3; do
        ports="$(kq_free_port) $(kq_free_port)"
        [[ "${ports% *}" != "${ports#* }" ]] || continue
        echo "$ports" >"$BATS_FILE_TMPDIR/kafka.ports"
        if private_broker_start; then
            started=1
            break
        fi
        grep -q "already in use" "$BATS_FILE_TMPDIR/kafka.ops.log" || break
    done
    if [[ $started != 1 ]]; then
        cat "$BATS_FILE_TMPDIR/kafka.ops.log" >&2
        return 1
    fi
    export KCQRS_BROKERS="127.0.0.1:${ports%% *}"
    export KCQRS_KAFKA_TIMEOUT_MS=5000
    cmd_make_keys
    cmd_start main
}

teardown_file() {
    cmd_stop_all
    private_broker_stop || true
}

setup() {
    cmd_use main
}

# elapsed_ms T0_NS
elapsed_ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

@test "broker stopped: a command answers 503 with Retry-After within the bound; recovery after it returns" {
    id=$(new_id)
    create_resource "$id"
    private_broker_stop

    t0=$(date +%s%N)
    req PUT "/api/v1/resources/$id" '{"name":"while down"}' -H 'If-Match: "1"' --max-time 60
    ms=$(elapsed_ms "$t0")
    echo "first command with the broker down answered $CODE after $ms ms"
    assert_error 503
    assert_retry_after
    [ "$ms" -le $((BOUND_S * 1000)) ]
    t0=$(date +%s%N)
    req POST /api/v1/resources "{\"id\":\"$id-b\",\"name\":\"while down\"}" --max-time 60
    ms=$(elapsed_ms "$t0")
    echo "second command answered $CODE after $ms ms"
    assert_error 503
    assert_retry_after
    [ "$ms" -le $((BOUND_S * 1000)) ]
    # /ready reports the dependency as unreachable within the bound too.
    kq_wait_for "$BOUND_S" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 '$CMD_URL/ready') == 503 ]]"

    private_broker_start
    t0=$(date +%s%N)
    seen=""
    while :; do
        req PUT "/api/v1/resources/$id" '{"name":"after recovery"}' -H 'If-Match: "1"' --max-time 60
        seen="$seen $CODE"
        [ "$CODE" = 200 ] && break
        [ "$CODE" = 503 ] || kq_fail "unexpected answer while recovering: $CODE $BODY"
        [ "$(elapsed_ms "$t0")" -le $((RECOVER_S * 1000)) ] || kq_fail "not recovered within ${RECOVER_S}s:$seen"
        sleep 0.2
    done
    echo "recovered $(elapsed_ms "$t0") ms after the broker was back; answers:$seen"
    jcheck "d['version'] == 2"
    cmd_wait_ready main 30
    # Nothing of the refused commands is in the log.
    run versions_of "$id"
    echo "$output"
    [ "$(cut -d' ' -f2- <<<"$output")" = "1 ResourceCreated
2 ResourceUpdated" ]
    BODY=$(dump_of "$id" | awk '$3 ~ /0002$/' | cut -d' ' -f5-)
    jcheck "d['payload'] == {'name': 'after recovery'}"
    [ "$(dump_topic | awk -v k="$id-b/" 'index($3, k) == 1' | wc -l)" = 0 ]
}

@test "broker stopped during load: 503s within the bound, recovery, every acknowledged command logged exactly once" {
    ledger="$BATS_TEST_TMPDIR/ledger"
    load_start "$CMD_URL" "$ledger" 4
    sleep 1.5
    private_broker_stop
    sleep 2
    # A probe while down: answered within the bound.
    t0=$(date +%s%N)
    req POST /api/v1/resources "{\"id\":\"probe-$RANDOM\",\"name\":\"probe\"}" --max-time 60
    [ "$(elapsed_ms "$t0")" -le $((BOUND_S * 1000)) ]
    assert_error 503
    n=$(wc -l <"$ledger")
    private_broker_start
    # The load goes on until commands succeed again (20 more acknowledged).
    kq_wait_for "$RECOVER_S" bash -c "[[ \$(awk 'NR > $n && \$2 == 201' '$ledger' | wc -l) -ge 20 ]]"
    load_stop "$ledger"
    echo "statuses: $(awk '{ print $2 }' "$ledger" | sort | uniq -c | tr '\n' ' ')"
    # Nothing else than 201 and 503 (no 500, no hang).
    [ "$(awk '$2 != 201 && $2 != 503' "$ledger" | wc -l)" = 0 ]
    [ "$(awk '$2 == 503' "$ledger" | wc -l)" -gt 0 ]
    run ledger_check "$ledger"
    echo "$output"
    [ "$status" -eq 0 ]
}
