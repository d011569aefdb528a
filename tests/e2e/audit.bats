#!/usr/bin/env bats
# audit.bats — kcqrs-audit against the real broker, with PostgreSQL and LMDB
# out of reach (it reads Kafka only): query filters return exactly the events
# the test created (ids, versions, actors of two API keys, event types, time
# ranges); verify-chain passes an intact log written in several batches across
# a restart of kcqrs-commands (the head it prints is the prev_hash of the next
# event) and names the offset of each kind of tampering: a forged record, a
# tombstone, and a byte flipped in a segment file with the broker stopped.
# Each test has its own topics (use_prefix) and its own kcqrs-commands.

load helpers
load commands_helpers
load audit_helpers

setup_file() {
    cmd_make_keys
    "$KCQRS_BIN/kcqrs-keys" create --name e2e-writer2 --roles writer --file "$KCQRS_KEYS_FILE" \
        >"$BATS_FILE_TMPDIR/writer2.key"
    "$KCQRS_BIN/kcqrs-keys" create --name e2e-auditor --roles auditor --file "$KCQRS_KEYS_FILE" \
        >"$BATS_FILE_TMPDIR/auditor.key"
}

teardown_file() {
    [[ -f "$BATS_FILE_TMPDIR/qry.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    cmd_stop_all
}

# qry_start: kcqrs-query on this test's topics (it checks their hash chain);
# sets QRY.
qry_start() {
    local port
    port=$(kq_free_port)
    QRY="http://127.0.0.1:$port"
    KCQRS_LMDB_DIR="$BATS_TEST_TMPDIR/qlmdb" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        kq_bg "$BATS_FILE_TMPDIR/qry.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/qry.pid"
    kq_wait_http "$QRY/health" 30
}

# chain_get [KEY]: GET /api/v1/audit/chain; sets CODE and BODY.
chain_get() {
    BODY=$(curl -s --max-time 10 -H "Authorization: Bearer ${1:-$(cat "$BATS_FILE_TMPDIR/auditor.key")}" \
        -w '\n%{http_code}' "$QRY/api/v1/audit/chain${CHAIN_QS:-}")
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
}

# chain_is TOPIC PARTITION PYTHON_EXPR: the partition's item (q) satisfies the expression.
chain_is() {
    chain_get
    [[ "$CODE" == 200 ]] || return 1
    python3 -c '
import json, sys
d = json.loads(sys.argv[4])
q = [x for x in d["partitions"] if x["topic"] == sys.argv[1] and x["partition"] == int(sys.argv[2])]
sys.exit(0 if len(q) == 1 and eval(sys.argv[3]) else 1)' "$1" "$2" "$3" "$BODY"
}

# chain_metric LABELS VALUE: kcqrs-query's /metrics has
# kcqrs_query_chain_partitions{LABELS} VALUE.
chain_metric() {
    local m
    m=$(curl -fsS "$QRY/metrics")
    grep -qx "kcqrs_query_chain_partitions{$1} $2" <<<"$m" ||
        kq_fail "want kcqrs_query_chain_partitions{$1} $2, got: $(grep '^kcqrs_query_chain' <<<"$m")"
}

# JSON lines of audit.out -> "id version event actor" per line, in output order.
rows() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert {"topic", "partition", "offset", "occurred_at_us", "aggregate_id"} <= set(d), d
    print(d["aggregate_id"], d["version"], d["payload_type"], d["actor"])' \
        "$BATS_TEST_TMPDIR/audit.out"
}

@test "query: aggregate id, actors, event types and time ranges give exactly the events created (databases gone)" {
    use_prefix q
    cmd_start q
    a1=$(new_id)-a1 a2=$(new_id)-a2 b1=$(new_id)-b1
    t0=$(now_us)
    create_resource "$a1" one
    req PUT "/api/v1/resources/$a1" '{"name":"two"}'
    [ "$CODE" = 200 ]
    create_resource "$a2" other
    sleep 0.3
    tmid=$(now_us)
    sleep 0.3
    req PUT "/api/v1/resources/$a1" '{"status":"inactive"}'
    [ "$CODE" = 200 ]
    req DELETE "/api/v1/resources/$a2"
    [ "$CODE" = 200 ]
    REQ_KEY=$(cat "$BATS_FILE_TMPDIR/writer2.key") create_resource "$b1" bee
    REQ_KEY=$(cat "$BATS_FILE_TMPDIR/writer2.key") req PUT "/api/v1/resources/$b1" '{"name":"b2"}'
    [ "$CODE" = 200 ]
    t1=$(now_us)

    audit query --aggregate-id "$a1"
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$a1 1 ResourceCreated e2e-writer
$a1 2 ResourceUpdated e2e-writer
$a1 3 ResourceUpdated e2e-writer" ]
    # topic, partition and offset name the record
    p=$(partition_for "$a1" 6)
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert d["topic"] == sys.argv[2] and d["partition"] == int(sys.argv[3]), d
    assert isinstance(d["offset"], int) and d["offset"] >= 0, d' \
        "$BATS_TEST_TMPDIR/audit.out" "$(resource_topic)" "$p"
    [ "$(head -n1 "$BATS_TEST_TMPDIR/audit.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["offset"])')" = "$(last_offset "$a1" 1)" ]

    audit query --actor e2e-writer2
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$b1 1 ResourceCreated e2e-writer2
$b1 2 ResourceUpdated e2e-writer2" ]

    audit query --event-type ResourceDeleted
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$a2 2 ResourceDeleted e2e-writer" ]

    audit query --aggregate-type resource --until "@$tmid"
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$a1 1 ResourceCreated e2e-writer
$a1 2 ResourceUpdated e2e-writer
$a2 1 ResourceCreated e2e-writer" ]

    since=$(python3 -c 'import datetime, sys; print(datetime.datetime.fromtimestamp(int(sys.argv[1]) / 1e6, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))' "$tmid")
    audit query --since "$since"
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$a1 3 ResourceUpdated e2e-writer
$a2 2 ResourceDeleted e2e-writer
$b1 1 ResourceCreated e2e-writer2
$b1 2 ResourceUpdated e2e-writer2" ]

    audit query --since "@$t1"
    [ "$AUD_RC" = 0 ]
    [ ! -s "$BATS_TEST_TMPDIR/audit.out" ]
    audit query --since "@$t0" --until "@$t1" --limit 2
    [ "$AUD_RC" = 0 ]
    run rows
    [ "$output" = "$a1 1 ResourceCreated e2e-writer
$a1 2 ResourceUpdated e2e-writer" ]
    audit query --since @0 --until "@$t1"
    [ "$AUD_RC" = 0 ]
    [ "$(wc -l <"$BATS_TEST_TMPDIR/audit.out")" = 7 ]
    audit query --aggregate-type workflow
    [ "$AUD_RC" = 0 ]
    [ ! -s "$BATS_TEST_TMPDIR/audit.out" ]

    audit query --actor e2e-writer2 --format table
    [ "$AUD_RC" = 0 ]
    [ "$(wc -l <"$BATS_TEST_TMPDIR/audit.out")" = 3 ]
    head -n1 "$BATS_TEST_TMPDIR/audit.out" | grep -Eq '^time +type +id +version +event type +actor$'
    sed -n 2p "$BATS_TEST_TMPDIR/audit.out" | grep -Eq "^[0-9T:.-]+Z +resource +$b1 +1 +ResourceCreated +e2e-writer2$"
    # columns aligned: "version" ends where each version number ends
    python3 -c '
import sys
lines = open(sys.argv[1]).read().splitlines()
end = lines[0].index("version") + len("version")
assert all(l[end - 1].isdigit() and l[end] == " " for l in lines[1:]), lines' "$BATS_TEST_TMPDIR/audit.out"

    # a record that is not an envelope is named on stderr and skipped
    kq_tool kq_produce_raw raw resource "$p" junk/00000000000000000001 --text "not flatbuffers"
    audit query --aggregate-type resource
    [ "$AUD_RC" = 0 ]
    [ "$(wc -l <"$BATS_TEST_TMPDIR/audit.out")" = 7 ]
    grep -q "$(resource_topic) \[$p\] offset [0-9]*: not a valid envelope" "$BATS_TEST_TMPDIR/audit.err"

    # Kafka out of reach: exit 3, nothing on stdout
    KCQRS_BROKERS=127.0.0.1:1 KCQRS_KAFKA_TIMEOUT_MS=1000 audit query --aggregate-id "$a1"
    [ "$AUD_RC" = 3 ]
    [ ! -s "$BATS_TEST_TMPDIR/audit.out" ]
    KCQRS_BROKERS=127.0.0.1:1 KCQRS_KAFKA_TIMEOUT_MS=1000 audit verify-chain
    [ "$AUD_RC" = 3 ]
    [ ! -s "$BATS_TEST_TMPDIR/audit.out" ]

    # usage errors: exit 2, nothing on stdout
    for bad in "--event-type Nope" "--since yesterday" "--format xml" "--limit 0" \
        "--aggregate-id bad/id" "--until" "--whatever"; do
        audit query $bad
        [ "$AUD_RC" = 2 ]
        [ ! -s "$BATS_TEST_TMPDIR/audit.out" ]
    done
}

@test "verify-chain: an intact log (batches, a restart) verifies clean; the head is the next event's prev_hash" {
    use_prefix intact
    cmd_start intact
    ids=()
    for i in $(seq 1 12); do ids+=("$(new_id)-$i"); done
    # concurrent creates: several events per transaction
    for id in "${ids[@]}"; do
        curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $KQ_KEY_WRITER" \
            -H 'Content-Type: application/json' --data-binary "{\"id\":\"$id\",\"name\":\"n\"}" \
            "$CMD_URL/api/v1/resources" >>"$BATS_TEST_TMPDIR/codes" &
    done
    wait
    [ "$(grep -c '^201$' "$BATS_TEST_TMPDIR/codes")" = 12 ]
    for id in "${ids[@]:0:6}"; do
        req PUT "/api/v1/resources/$id" '{"name":"m"}'
        [ "$CODE" = 200 ]
    done
    cmd_stop intact
    cmd_start intact
    for id in "${ids[@]:0:4}"; do
        req PUT "/api/v1/resources/$id" '{"name":"after restart"}'
        [ "$CODE" = 200 ]
    done
    # the restart read nothing: the heads came from the snapshot
    grep -q "loaded snapshot" "$BATS_FILE_TMPDIR/intact.log"
    grep -q "caught up with the event topics: 0 records read" "$BATS_FILE_TMPDIR/intact.log"

    audit verify-chain
    [ "$AUD_RC" = 0 ]
    [ "$(tail -n1 "$BATS_TEST_TMPDIR/audit.out")" = "chain intact: 18 partitions, 22 records" ]
    [ "$(grep -c ' intact$' "$BATS_TEST_TMPDIR/audit.out")" = 18 ]
    audit verify-chain --json
    [ "$AUD_RC" = 0 ]
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["intact"] is True and d["records"] == 22 and len(d["partitions"]) == 18, d
assert all(p["intact"] and p["break"] is None for p in d["partitions"]), d' "$BATS_TEST_TMPDIR/audit.out"

    # the head of ids[0]'s partition is the hash of its last record: the next
    # event the writer appends there carries it as prev_hash
    audit verify-chain
    p=$(partition_for "${ids[0]}" 6)
    head=$(head_of "$(resource_topic)" "$p")
    [[ "$head" =~ ^[0-9a-f]{64}$ ]]
    req PUT "/api/v1/resources/${ids[0]}" '{"name":"next"}'
    [ "$CODE" = 200 ]
    [ "$(prev_hash_of "${ids[0]}" 4)" = "$head" ]

    # a stored head is accepted while it is a record's hash (the log grew since) ...
    audit verify-chain --expect-head "$(resource_topic):$p=$head"
    [ "$AUD_RC" = 0 ]
    # ... and a head that is no record's hash is a break
    other=$(python3 -c 'import sys; h = sys.argv[1]; print(("0" if h[0] != "0" else "1") + h[1:])' "$head")
    audit verify-chain --expect-head "$(resource_topic):$p=$other"
    [ "$AUD_RC" = 1 ]
    grep -q "^$(resource_topic):$p=[0-9a-f]* records=[0-9]* BROKEN head at offset [0-9]*: .*the expected head $other" "$BATS_TEST_TMPDIR/audit.out"
    audit verify-chain --expect-head "$(resource_topic):99=$head"
    [ "$AUD_RC" = 2 ]
}

@test "verify-chain: a forged record written straight into the topic is named at its offset" {
    use_prefix forged
    cmd_start forged
    id=$(new_id)
    create_resource "$id" one
    req PUT "/api/v1/resources/$id" '{"name":"two"}'
    [ "$CODE" = 200 ]
    p=$(partition_for "$id" 6)
    audit verify-chain
    [ "$AUD_RC" = 0 ]
    head=$(head_of "$(resource_topic)" "$p")
    # the forger copies the head as prev_hash: the record alone looks chained
    kq_tool kq_produce_raw event "$id" 3 --type updated --name forged --prev "$head"
    forged=$(forged_offset "$id" 3)
    audit verify-chain
    [ "$AUD_RC" = 0 ] # not detectable until the writer appends after it
    # the writer does not know the forged record: its next event chains to v2
    req PUT "/api/v1/resources/$id" '{"name":"three"}'
    [ "$CODE" = 200 ]
    audit verify-chain
    [ "$AUD_RC" = 1 ]
    grep -q "^$(resource_topic):$p=[0-9a-f]* records=4 BROKEN not_in_chain at offset $forged: offset $forged is not part of the chain (offset $(last_offset "$id" 3) chains to offset $(last_offset "$id" 2))$" "$BATS_TEST_TMPDIR/audit.out"
    [ "$(tail -n1 "$BATS_TEST_TMPDIR/audit.out")" = "chain BROKEN: 1 of 18 partitions; first: $(resource_topic):$p offset $forged" ]
    audit verify-chain --json
    [ "$AUD_RC" = 1 ]
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
b = [p for p in d["partitions"] if not p["intact"]]
assert d["intact"] is False and len(b) == 1, d
assert b[0]["partition"] == int(sys.argv[2]) and b[0]["break"]["kind"] == "not_in_chain", b
assert b[0]["break"]["offset"] == int(sys.argv[3]), b' "$BATS_TEST_TMPDIR/audit.out" "$p" "$forged"
}

@test "GET /api/v1/audit/chain: kcqrs-query checks each partition as events arrive; a forged record shows broken at its offset" {
    use_prefix qchain
    cmd_start qchain
    qry_start
    id=$(new_id)
    create_resource "$id" one
    req PUT "/api/v1/resources/$id" '{"name":"two"}'
    [ "$CODE" = 200 ]
    p=$(partition_for "$id" 6)
    t=$(resource_topic)
    kq_wait_for 30 chain_is "$t" "$p" 'q[0]["events_checked"] == 2 and q[0]["state"] == "intact"'
    # every partition of the three event topics, each read to its end
    kq_wait_for 30 chain_is "$t" "$p" 'd["intact"] is True and len(d["partitions"]) == 18'
    echo "$BODY" | head -c 3000
    # /metrics: the same states, and the records fed (promtool-clean)
    chain_metric 'state="intact"' 18
    chain_metric 'state="broken"' 0
    chain_metric 'state="not_verified"' 0
    [ "$(curl -fsS "$QRY/metrics" | awk '$1 == "kcqrs_query_chain_events_checked_total" { print $2 }')" -ge 2 ]
    kq_check_metrics "$QRY/metrics"
    audit verify-chain
    [ "$AUD_RC" = 0 ]
    head=$(head_of "$t" "$p")
    # the same head as kcqrs-audit, the writer's offsets and a time
    chain_is "$t" "$p" "q[0]['head'] == '$head' and q[0]['last_checked_offset'] == $(last_offset "$id" 2) and q[0]['break'] is None and q[0]['checked_at'].endswith('Z') and q[0]['end_offset'] > q[0]['last_checked_offset']"
    kq_tool kq_produce_raw event "$id" 3 --type updated --name forged --prev "$head"
    forged=$(forged_offset "$id" 3)
    kq_wait_for 30 chain_is "$t" "$p" "q[0]['events_checked'] == 3 and q[0]['last_checked_offset'] == $forged"
    chain_is "$t" "$p" 'q[0]["state"] == "intact"' # chained to the head: not detectable yet
    req PUT "/api/v1/resources/$id" '{"name":"three"}'
    [ "$CODE" = 200 ]
    kq_wait_for 30 chain_is "$t" "$p" 'q[0]["events_checked"] == 4'
    echo "$BODY" | head -c 3000
    chain_is "$t" "$p" "q[0]['state'] == 'broken' and q[0]['break']['kind'] == 'not_in_chain' and q[0]['break']['offset'] == $forged and 'offset $forged is not part of the chain' in q[0]['break']['message'] and d['intact'] is False"
    # only this partition is broken
    jcheck "[(x['topic'], x['partition']) for x in d['partitions'] if x['state'] != 'intact'] == [('$t', $p)]"
    chain_metric 'state="broken"' 1
    chain_metric 'state="intact"' 17
    # auditor or admin only; no parameters
    chain_get "$KQ_KEY_READER"
    [ "$CODE" = 403 ]
    chain_get "$KQ_KEY_ADMIN"
    [ "$CODE" = 200 ]
    CHAIN_QS="?x=1" chain_get
    [ "$CODE" = 400 ]
    jcheck "d['code'] == 'validation_failed' and d['errors'][0]['field'] == 'x'"
    kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    ! grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$BATS_FILE_TMPDIR/qry.log"
}

# topic_gone TOPIC: the broker no longer knows TOPIC.
topic_gone() { ! kq_tool kq_topics describe "$1" >/dev/null 2>&1; }

@test "GET /api/v1/audit/chain: an event topic deleted and created again under kcqrs-query is checked again from its start" {
    use_prefix recreate
    kq_tool kq_topics create >/dev/null
    qry_start
    id=$(new_id)
    p=$(partition_for "$id" 6)
    t=$(resource_topic)
    # version 2 without a prev_hash: this log's chain is broken at offset 1
    kq_tool kq_produce_raw event "$id" 1
    kq_tool kq_produce_raw event "$id" 2 --type updated
    kq_wait_for 30 chain_is "$t" "$p" 'q[0]["events_checked"] == 2 and q[0]["state"] == "broken" and q[0]["break"]["offset"] == 1'
    kq_tool kq_topics delete "$t"
    kq_wait_for 30 topic_gone "$t"
    kq_tool kq_topics create >/dev/null
    # the new log holds one valid first event: checked from offset 0, intact
    kq_tool kq_produce_raw event "$id" 1 --name again
    kq_wait_for 30 chain_is "$t" "$p" 'q[0]["events_checked"] == 1 and q[0]["last_checked_offset"] == 0 and q[0]["state"] == "intact"'
    chain_get
    echo "$BODY" | head -c 2000
    jcheck "d['intact'] is True and len(d['partitions']) == 18"
    curl -fsS "$QRY/metrics" | awk '$1 == "kcqrs_query_chain_restarts_total" { exit !($2 >= 1) }'
    grep -q "hash chain: $t/$p .*: checked again from its first record" "$BATS_FILE_TMPDIR/qry.log"
    kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    ! grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$BATS_FILE_TMPDIR/qry.log"
}

@test "verify-chain: an event erased with a tombstone is named at the tombstone's offset" {
    use_prefix tomb
    cmd_start tomb
    id=$(new_id)
    create_resource "$id" one
    req PUT "/api/v1/resources/$id" '{"name":"two"}'
    [ "$CODE" = 200 ]
    p=$(partition_for "$id" 6)
    before=$(kq_tool kq_offsets ends "$(resource_topic)" | awk -v p="$p" '$1 == p { print $2 }')
    kq_tool kq_produce_raw raw resource "$p" "$(printf '%s/%020d' "$id" 1)" --null
    audit verify-chain
    [ "$AUD_RC" = 1 ]
    grep -q "^$(resource_topic):$p=[0-9a-f]* records=3 BROKEN tombstone at offset $before: offset $before: tombstone" "$BATS_TEST_TMPDIR/audit.out"
    # query skips it and says so
    audit query --aggregate-id "$id"
    [ "$AUD_RC" = 0 ]
    [ "$(wc -l <"$BATS_TEST_TMPDIR/audit.out")" = 2 ]
    grep -q "offset $before: tombstone" "$BATS_TEST_TMPDIR/audit.err"
}

@test "verify-chain: a byte flipped in a segment file (broker stopped under load) is named at the next record; the rest stays intact" {
    kq_broker_owned || skip "the broker was not started by this suite (KQ_E2E_BROKERS)"
    use_prefix flip
    cmd_start flip
    id=$(new_id)
    # the needle is the create's Idempotency-Key (the envelope's command_id):
    # plain text in the record once (a resource's name is sealed, events/ev_pii.h)
    needle="flip-me-$RANDOM$RANDOM"
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"flip\"}" -H "Idempotency-Key: $needle"
    [ "$CODE" = 201 ]
    req PUT "/api/v1/resources/$id" '{"name":"after"}'
    [ "$CODE" = 200 ]
    p=$(partition_for "$id" 6)
    v1=$(last_offset "$id" 1)
    v2=$(last_offset "$id" 2)
    audit verify-chain
    [ "$AUD_RC" = 0 ]
    # The broker goes away under a load of creates: transactions fail or end
    # with an unknown outcome, and the writer must never chain on an event
    # that did not commit.
    ledger="$BATS_TEST_TMPDIR/ledger"
    load_start "$CMD_URL" "$ledger" 2
    kq_wait_for 30 bash -c "[[ \$(grep -c ' 201\$' '$ledger') -ge 20 ]]"
    kq_broker_stop
    flip_in_segment "$(resource_topic)" "$p" "$needle"
    kq_broker_start
    cmd_wait_ready flip 90
    n=$(grep -c ' 201$' "$ledger")
    kq_wait_for 30 bash -c "[[ \$(grep -c ' 201\$' '$ledger') -ge $((n + 20)) ]]"
    load_stop "$ledger"
    echo "statuses: $(awk '{ print $2 }' "$ledger" | sort | uniq -c | tr '\n' ' ')" |
        tee "$BATS_TEST_TMPDIR/statuses"
    # Whether the outage failed commands (503, no answer) or only delayed
    # them depends on timing (a commit may wait out a short outage); either
    # way, what committed must chain and what did not must not.

    audit verify-chain
    [ "$AUD_RC" = 1 ]
    grep -q "^$(resource_topic):$p=[0-9a-f]* records=[0-9]* BROKEN prev_hash at offset $v2: offset $v2: prev_hash does not match offset $v1 ($v1 altered, or records between removed)$" "$BATS_TEST_TMPDIR/audit.out"
    # every other partition, written across the outage, is intact
    [ "$(grep -c ' intact$' "$BATS_TEST_TMPDIR/audit.out")" = 17 ]
    [ "$(tail -n1 "$BATS_TEST_TMPDIR/audit.out")" = "chain BROKEN: 1 of 18 partitions; first: $(resource_topic):$p offset $v2" ]
    # the CRC is not checked (check.crcs=false): the altered value is what a reader gets
    audit query --aggregate-id "$id"
    [ "$AUD_RC" = 0 ]
    grep -q "\"command_id\":\"F${needle:1}\"" "$BATS_TEST_TMPDIR/audit.out"
}

@test "kcqrs-events cat: a topic as JSON lines equals the committed log; PARTITION:OFFSET, --max, --framed | decode; junk named; bad specs" {
    use_prefix cat
    cmd_start cat
    id=$(new_id)
    create_resource "$id" one
    req PUT "/api/v1/resources/$id" '{"name":"two"}'
    [ "$CODE" = 200 ]
    p=$(partition_for "$id" 6)
    kq_tool kq_produce_raw raw resource "$p" junk-key --text '{"not":"an envelope"}'
    EV="$KCQRS_BIN/kcqrs-events"
    "$EV" cat resource >"$BATS_TEST_TMPDIR/cat.jsonl" 2>"$BATS_TEST_TMPDIR/cat.err" ||
        { cat "$BATS_TEST_TMPDIR/cat.err"; false; }
    # records as written, as cat prints them (personal data sealed)
    kq_tool kq_offsets dump-sealed "$(resource_topic)" >"$BATS_TEST_TMPDIR/dump.txt"
    # every record kq_offsets dump sees, in the same partitions and offsets, the
    # same keys and envelopes; plus the junk record with an error and its JSON value
    python3 - "$BATS_TEST_TMPDIR/cat.jsonl" "$BATS_TEST_TMPDIR/dump.txt" "$(resource_topic)" "$id" "$p" <<'PY'
import json, sys
cat = [json.loads(l) for l in open(sys.argv[1])]
topic, idv, part = sys.argv[3], sys.argv[4], int(sys.argv[5])
dump = {}
for line in open(sys.argv[2]):
    p, off, k, et, js = line.rstrip("\n").split(" ", 4)
    dump[(int(p), int(off))] = (k, json.loads(js))
good = [c for c in cat if "event" in c]
bad = [c for c in cat if "event" not in c]
assert all(c["topic"] == topic and c["timestamp"].endswith("Z") for c in cat), cat
junk = {po for po, (k, d) in dump.items() if "undecodable" in d}
assert {(c["partition"], c["offset"]) for c in bad} == junk and len(junk) == 1, (bad, junk)
assert {(c["partition"], c["offset"]): (c["key"], c["event"]) for c in good} == \
    {po: v for po, v in dump.items() if po not in junk}, (good, dump)
assert [c["event"]["version"] for c in good if c["event"]["aggregate_id"] == idv] == [1, 2], good
assert len(bad) == 1 and bad[0]["partition"] == part and bad[0]["key"] == "junk-key", bad
assert bad[0]["value"] == {"not": "an envelope"} and bad[0]["error"], bad
PY
    # one partition from an offset; --max
    off2=$(last_offset "$id" 2)
    run "$EV" cat "resource:$p:$off2"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    [[ "${lines[0]}" == *"\"offset\":$off2,"*"\"version\":2"* ]]
    [[ "${lines[1]}" == *"\"key\":\"junk-key\""*"\"error\":"* ]]
    run "$EV" cat "$(resource_topic):$p" --max 1
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "${lines[0]}" == *"\"version\":1"* ]]
    # --framed | decode gives the same events
    "$EV" cat "resource:$p" --max 2 --framed >"$BATS_TEST_TMPDIR/two.bin"
    run "$EV" decode <"$BATS_TEST_TMPDIR/two.bin"
    [ "$status" -eq 0 ]
    printf '%s\n' "${lines[@]}" >"$BATS_TEST_TMPDIR/dec.jsonl"
    python3 -c '
import json, sys
cat = [json.loads(l)["event"] for l in open(sys.argv[1]) if json.loads(l)["partition"] == int(sys.argv[3]) and "event" in json.loads(l)][:2]
dec = [json.loads(l) for l in open(sys.argv[2])]
assert cat == dec and len(dec) == 2, (cat, dec)' "$BATS_TEST_TMPDIR/cat.jsonl" "$BATS_TEST_TMPDIR/dec.jsonl" "$p"
    # bad specs: usage (2); a topic or partition that does not exist (1)
    for spec in "" ":1" "resource:x" "resource:1:-3" "resource:1:2:3"; do
        run "$EV" cat "$spec"
        [ "$status" -eq 2 ]
    done
    run "$EV" cat resource:6
    [ "$status" -eq 1 ]
    [[ "$output" == *"partitions 0..5, not 6"* ]]
    KCQRS_KAFKA_TIMEOUT_MS=1000 run "$EV" cat "$KCQRS_TOPIC_PREFIX.no.such.topic"
    [ "$status" -eq 1 ]
    [[ "$output" == *"does not exist"* ]]
}
