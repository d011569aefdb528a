#!/usr/bin/env bats
# smoke.bats — the toolchain end to end on the suite's real Kafka and
# PostgreSQL: admin API topic creation, FlatBuffers envelope encoding,
# transactional produce with the kcqrs key/partition/header conventions,
# read_committed consumption (aborted records invisible), decoding, and a
# JSONB row in PostgreSQL. The work is done once by tests/tools/kq_smoke in
# setup_file; each test below checks one promise against what Kafka and
# PostgreSQL actually hold.

load helpers

# kq_smoke's scratch table is not part of the read model: it lives in the
# database's default schema, and kq_psql must look there.
export KCQRS_PG_SCHEMA=public

EVENT="$KQ_REPO/tests/data/events/resource_created.json"
# The event's aggregate id and version, and the keys kq_smoke produces from
# them: version v committed, v+1 aborted, v+2 committed.
AGG=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["aggregate_id"])' "$EVENT")
VER=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$EVENT")
key() { printf '%s/%020d' "$AGG" "$1"; }

setup_file() {
    kq_fresh_db smoke
    local rc=0
    kq_tool kq_smoke "$EVENT" --produced "$BATS_FILE_TMPDIR/produced.bin" \
        --consumed "$BATS_FILE_TMPDIR/consumed.bin" >"$BATS_FILE_TMPDIR/smoke.out" 2>&1 || rc=$?
    echo "$rc" >"$BATS_FILE_TMPDIR/smoke.rc"
}

smoke_output() { cat "$BATS_FILE_TMPDIR/smoke.out"; }

@test "kq_smoke completes every step" {
    run smoke_output
    echo "$output"
    [ "$(cat "$BATS_FILE_TMPDIR/smoke.rc")" = 0 ]
    [[ "$output" == *"smoke: stored 2 records in smoke_events"* ]]
}

@test "topics created through the admin API are compacted with infinite retention" {
    run kq_tool kq_topics describe
    echo "$output"
    [ "$status" -eq 0 ]
    for t in resource.events workflow.events run.events dlq; do
        line=$(grep "^$KCQRS_TOPIC_PREFIX\.$t " <<<"$output")
        [[ "$line" == *" partitions=6 "* ]]
        [[ "$line" == *" replication=1 "* ]]
        [[ "$line" == *" cleanup.policy=compact "* ]]
        [[ "$line" == *" retention.ms=-1 "* ]]
        # tombstones (erasures) kept for good, not the broker's 24 h
        [[ "$line" == *" delete.retention.ms=3153600000000 "* ]]
        [[ "$line" == *" min.insync.replicas=1" ]]
    done
}

@test "ensuring topics again accepts them; a different partition count is refused" {
    run kq_tool kq_topics create
    echo "$output"
    [ "$status" -eq 0 ]
    KCQRS_PARTITIONS=3 run kq_tool kq_topics create
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"exists with 6 partitions but KCQRS_PARTITIONS is 3"* ]]
}

@test "the bytes read back equal the bytes produced, and PostgreSQL holds the same bytes" {
    [ -s "$BATS_FILE_TMPDIR/produced.bin" ]
    cmp "$BATS_FILE_TMPDIR/produced.bin" "$BATS_FILE_TMPDIR/consumed.bin"
    # FlatBuffers file identifier KQEV at bytes 4..7.
    [ "$(dd if="$BATS_FILE_TMPDIR/produced.bin" bs=1 skip=4 count=4 2>/dev/null)" = KQEV ]
    sum=$(sha256sum "$BATS_FILE_TMPDIR/produced.bin" | cut -d' ' -f1)
    run kq_psql -c "SELECT encode(sha256(value), 'hex') FROM smoke_events WHERE version = $VER"
    [ "$status" -eq 0 ]
    [ "$output" = "$sum" ]
}

@test "the PostgreSQL row has the event's key, partition, aggregate id, version and payload" {
    want_partition=$(partition_for "$AGG" 6)
    run kq_psql -v input="$(cat "$EVENT")" -v ver="$VER" <<'SQL'
SELECT topic, record_key, kafka_partition, aggregate_id, version, event_type,
       event->>'aggregate_id', event->>'version', event->>'payload_type',
       event->'payload' = (:'input'::jsonb)->'payload',
       event->'event_id' = (:'input'::jsonb)->'event_id'
  FROM smoke_events WHERE version = :ver
SQL
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "$KCQRS_TOPIC_PREFIX.resource.events|$(key "$VER")|$want_partition|$AGG|$VER|ResourceCreated|$AGG|$VER|ResourceCreated|t|t" ]
}

@test "an aborted transaction's record is in the log but never returned by read_committed" {
    run smoke_output
    committed1=$(key "$VER") aborted=$(key $((VER + 1))) committed2=$(key $((VER + 2)))
    # It was delivered to the partition (it has an offset) between the two commits...
    first=$(sed -n "s|^smoke: committed key=$committed1 offset=||p" <<<"$output")
    middle=$(sed -n "s|^smoke: aborted key=$aborted offset=||p" <<<"$output")
    last=$(sed -n "s|^smoke: committed key=$committed2 offset=||p" <<<"$output")
    [ -n "$first" ] && [ -n "$middle" ] && [ -n "$last" ]
    [ "$first" -lt "$middle" ] && [ "$middle" -lt "$last" ]
    # ...the reader read past it (it returned the later record)...
    [[ "$output" == *"smoke: read key=$committed2 offset=$last "* ]]
    # ...and never returned it.
    [[ "$output" != *"smoke: read key=$aborted"* ]]
    run kq_psql -c "SELECT string_agg(version::text, ',' ORDER BY version) FROM smoke_events"
    [ "$output" = "$VER,$((VER + 2))" ]
}
