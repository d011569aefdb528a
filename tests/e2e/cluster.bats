#!/usr/bin/env bats
# cluster.bats — kcqrs on a 3-node Kafka cluster (replication factor 3,
# min.insync.replicas 2), started once for this file on free ports
# (cluster_helpers.bash): with one broker killed commands are still
# acknowledged; with two down, commands answer 503 + Retry-After within
# KCQRS_KAFKA_TIMEOUT_MS (never 2xx, never a hang), the query API keeps serving
# reads and /api/v1/status names the brokers that are down and the partitions
# that are unavailable; when the brokers return, everything resumes without
# restarting a kcqrs process.

load helpers
load commands_helpers
load cluster_helpers

TIMEOUT_MS=5000

svc_start() {
    local name="$1" log="$2"
    shift 2
    kq_bg "$log" "$@" >"$BATS_FILE_TMPDIR/$name.pid"
}
svc_pid() { cat "$BATS_FILE_TMPDIR/$1.pid"; }

setup_file() {
    kq_cluster_start "$(kq_cluster_dir "$KCQRS_TOPIC_PREFIX")" 3
    export KCQRS_BROKERS="$KQ_CLUSTER_BROKERS" KCQRS_REPLICATION_FACTOR=3 \
        KCQRS_MIN_INSYNC_REPLICAS=2 KCQRS_KAFKA_TIMEOUT_MS=$TIMEOUT_MS
    kq_fresh_db cluster
    cmd_make_keys
    cmd_start main 120
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    export QRY_PORT
    QRY_PORT=$(kq_free_port)
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_PROJECTOR_ADDR="127.0.0.1:$(kq_free_port)" \
        svc_start proj "$BATS_FILE_TMPDIR/proj.log" "$KCQRS_BIN/kcqrs-projector"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$QRY_PORT" \
        svc_start q "$BATS_FILE_TMPDIR/q.log" "$KCQRS_BIN/kcqrs-query"
    kq_wait_for 90 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:$QRY_PORT/ready') == 200 ]]"
}

teardown_file() {
    local rc=0
    for n in q proj; do
        [[ -f "$BATS_FILE_TMPDIR/$n.pid" ]] && kq_stop "$(svc_pid "$n")" 10
    done
    cmd_stop_all || rc=1
    kq_cluster_stop || true
    return $rc
}

setup() { cmd_use main; }

# status: GET /api/v1/status of the query API into $STATUS.
status() {
    STATUS=$(curl -s --max-time 5 -H "Authorization: Bearer $KQ_KEY_READER" \
        "http://127.0.0.1:$QRY_PORT/api/v1/status")
}

# status_check PYTHON_EXPR: the expression holds for d = status["kafka"].
status_check() {
    status
    python3 -c 'import json, sys
d = json.loads(sys.argv[2])["kafka"]
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" "$STATUS"
}

# timed_create ID: POST a create; sets CODE, BODY and MS (the answer's time).
timed_create() {
    local t0
    t0=$(date +%s%N)
    req POST /api/v1/resources "{\"id\":\"$1\",\"name\":\"n\"}" --max-time 60
    MS=$((($(date +%s%N) - t0) / 1000000))
}

@test "every topic has replication factor 3 and min.insync.replicas 2" {
    run kq_tool kq_topics describe
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(grep -c 'replication=3 .*min.insync.replicas=2' <<<"$output")" -eq 4 ]
    status_check 'sorted(b["id"] for b in d["brokers"] if b["state"] == "up") == [1, 2, 3] and d["brokers_down"] == [] and d["partitions_unavailable"] == []'
}

@test "one broker killed: commands are acknowledged" {
    # Node 3 stays down for the next test, which kills a second one.
    kq_cluster_node kill 3
    # While the controller moves the leadership away from the dead broker
    # (its session times out after 4 s), a command may fail: only with 503.
    local ok=0 seen="" i
    for i in $(seq 1 60); do
        timed_create "one-down-$i"
        seen="$seen $CODE"
        [[ "$CODE" == 201 || "$CODE" == 503 ]] || kq_fail "unexpected answer $CODE $BODY"
        [ "$MS" -le $((TIMEOUT_MS + 500)) ] || kq_fail "answer after $MS ms"
        if [[ "$CODE" == 201 ]]; then
            ok=$((ok + 1))
            [ $ok -ge 10 ] && break
        else
            ok=0
            sleep 0.5
        fi
    done
    echo "answers:$seen"
    [ $ok -ge 10 ]
    kq_wait_for 20 status_check 'd["brokers_down"] == [3] and len(d["partitions_under_replicated"]) > 0 and d["partitions_unavailable"] == []'
}

@test "two brokers down: 503 + Retry-After within the timeout, reads served, status names them; recovery" {
    local pids
    pids="$(cmd_pid main) $(svc_pid proj) $(svc_pid q)"
    kq_cluster_node status 3 2>/dev/null && kq_cluster_node kill 3 # when run alone
    # With node 3 just killed the leadership may still be moving: retry a 503
    # (same Idempotency-Key: never created twice).
    local i
    for i in $(seq 1 30); do
        req POST /api/v1/resources '{"id":"before-outage","name":"n"}' -H 'Idempotency-Key: before-outage'
        [[ "$CODE" == 201 ]] && break
        [[ "$CODE" == 503 ]] || kq_fail "create: $CODE $BODY"
        sleep 1
    done
    [ "$CODE" = 201 ]
    kq_wait_for 30 curl -fsS -o /dev/null -H "Authorization: Bearer $KQ_KEY_READER" \
        "http://127.0.0.1:$QRY_PORT/api/v1/resources/before-outage"

    kq_cluster_node kill 2
    for i in 1 2 3 4 5; do
        timed_create "two-down-$i"
        echo "command $i: $CODE after $MS ms: $BODY"
        assert_error 503
        assert_retry_after
        python3 -c 'import json, sys; c = json.loads(sys.argv[1])["code"]; sys.exit(c not in ("kafka_unavailable", "not_enough_replicas", "unavailable"))' "$BODY"
        [ "$MS" -le "$TIMEOUT_MS" ]
    done
    # The query API still answers reads from its read model.
    run curl -s -w ' %{http_code}' --max-time 5 -H "Authorization: Bearer $KQ_KEY_READER" \
        "http://127.0.0.1:$QRY_PORT/api/v1/resources/before-outage"
    echo "$output"
    [[ "$output" == *'"id":"before-outage"'*' 200' ]]
    # ... and says which brokers and partitions are unavailable.
    kq_wait_for 20 status_check 'sorted(d["brokers_down"]) == [2, 3] and len(d["partitions_unavailable"]) > 0 and all(b["state"] == ("up" if b["id"] == 1 else "down") for b in d["brokers"])'
    echo "$STATUS" | head -c 600

    # Back: commands are acknowledged again, by the same processes.
    kq_cluster_node start 2 &
    kq_cluster_node start 3
    wait
    local t0 seen=""
    t0=$(date +%s)
    while :; do
        timed_create "after-$RANDOM"
        seen="$seen $CODE"
        [[ "$CODE" == 201 ]] && break
        [[ "$CODE" == 503 ]] || kq_fail "unexpected answer while recovering: $CODE $BODY"
        [ $(($(date +%s) - t0)) -le 90 ] || kq_fail "not recovered within 90 s:$seen"
        sleep 0.5
    done
    echo "recovered after $(($(date +%s) - t0)) s:$seen"
    for i in 1 2 3 4 5; do
        timed_create "recovered-$i"
        [ "$CODE" = 201 ]
    done
    kq_wait_for 30 curl -fsS -o /dev/null -H "Authorization: Bearer $KQ_KEY_READER" \
        "http://127.0.0.1:$QRY_PORT/api/v1/resources/recovered-5"
    kq_wait_for 60 status_check 'd["brokers_down"] == [] and d["partitions_unavailable"] == []'
    # Nothing refused during the outage was written.
    [ "$(dump_topic | awk '$3 ~ /^two-down-/' | wc -l)" = 0 ]
    for p in $pids; do kill -0 "$p"; done
    [ "$pids" = "$(cmd_pid main) $(svc_pid proj) $(svc_pid q)" ]
}
