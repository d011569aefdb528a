#!/usr/bin/env bats
# projector.bats — kcqrs-projector end to end: events written by
# kcqrs-commands reach both read models (kq_rmcheck compares them with the
# log), the admin port answers /health, /ready and /metrics, poison records
# (random bytes, a valid envelope with a version gap) go to <prefix>.dlq with
# their origin and reason while later events are still applied, SIGTERM
# stops it with status 0, and kcqrs-dlq redrive re-applies a dead letter to
# both read models once they hold the version before it (nothing appended).

load helpers
load commands_helpers
load projector_helpers

# See projector_crash.bats.
KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX${PROJ_E2E_RUN:+.$PROJ_E2E_RUN}"

setup_file() {
    kq_fresh_db projector
    cmd_make_keys
    cmd_start main
    proj_start
    proj_wait_ready 60
}

teardown_file() {
    local rc=0
    proj_stop || true
    cmd_stop_all || rc=1
    proj_no_sanitizer_report || rc=1
    return "$rc"
}

setup() {
    cmd_use main
    proj_init
}

teardown() {
    [[ -z "${BATS_TEST_COMPLETED:-}" ]] && proj_dump_log
    return 0
}

@test "events from kcqrs-commands reach LMDB and PostgreSQL" {
    a=$(new_id)
    b=$(new_id)
    create_resource "$a" first
    create_resource "$b" second
    req PUT "/api/v1/resources/$a" '{"status":"archived","description":"moved"}' -H 'If-Match: "1"'
    [ "$CODE" = 200 ]
    kq_wait_for 30 rmcheck --pg "$KCQRS_PG_DSN"
    run rmcheck --pg "$KCQRS_PG_DSN"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"lmdb: equal"* && "$output" == *"pg: equal"* ]]
    [ "$(kq_psql -c "select status || ' ' || version || ' ' || description from resources where id = '$a'")" = "archived 2 moved" ]
}

@test "admin port: /health, /ready and /metrics with lag, batches and latency per target" {
    curl -fsS "$(proj_url /health)" | grep -q '"ok"'
    curl -fsS "$(proj_url /ready)" | grep -q '"ready"'
    m=$(curl -fsS "$(proj_url /metrics)")
    for t in lmdb pg; do
        grep -q "^kcqrs_projector_lag{target=\"$t\",topic=\"$KCQRS_TOPIC_PREFIX.resource.events\",partition=\"0\"} 0$" <<<"$m"
        grep -q "^kcqrs_projector_connected{target=\"$t\"} 1$" <<<"$m"
        grep -q "^kcqrs_projector_batch_size_count{target=\"$t\"} [1-9]" <<<"$m"
        grep -q "^kcqrs_projector_apply_seconds_bucket{target=\"$t\",le=\"+Inf\"} [1-9]" <<<"$m"
        grep -q "^kcqrs_projector_dead_letters_total{target=\"$t\"} " <<<"$m"
        n=$(awk -v k="kcqrs_projector_events_applied_total{target=\"$t\"}" '$1 == k { print $2 }' <<<"$m")
        [ "$n" -ge 3 ]
    done
    kq_check_metrics "$(proj_url /metrics)"
}

@test "poison records go to the dead-letter topic with their origin; later events are applied" {
    topic="$KCQRS_TOPIC_PREFIX.resource.events"
    junk="junk-$RANDOM$RANDOM"
    gap=$(new_id)
    refused_before=$(rmcheck --no-lmdb | sed -n 's/.* refused \([0-9]*\) .*/\1/p')
    kq_tool kq_produce_raw raw resource 0 "$junk" --random 200
    kq_tool kq_produce_raw event "$gap" 3
    after=$(new_id)
    create_resource "$after" after-the-poison
    kq_wait_for 30 rmcheck --pg "$KCQRS_PG_DSN"
    run rmcheck --pg "$KCQRS_PG_DSN"
    echo "$output"
    [[ "$output" == *"refused $((refused_before + 2)) "* ]]
    [ "$(kq_psql -c "select name from resources where id = '$after'")" = after-the-poison ]

    # Where the two poison records are in the log.
    junk_at=$(kq_tool kq_offsets dump "$topic" | awk -v k="$junk" '$3 == k { print $1 "/" $2 }')
    gap_at=$(kq_tool kq_offsets dump "$topic" | awk -v k="$gap/00000000000000000003" '$3 == k { print $1 "/" $2 }')
    [ -n "$junk_at" ] && [ -n "$gap_at" ]
    kq_wait_for 30 bash -c "'$KCQRS_TOOLS/kq_rmcheck' --dump-dlq | grep -q '^$topic/$gap_at.*\"target\":\"pg\"'"
    dlq=$(kq_tool kq_rmcheck --dump-dlq)
    echo "$dlq"
    for t in lmdb pg; do
        line=$(grep "^$topic/$junk_at	" <<<"$dlq" | grep "\"target\":\"$t\"")
        [ -n "$line" ]
        python3 - "$line" "$topic" "$junk_at" "$junk" <<'PY'
import base64, json, sys
key, reason, value = sys.argv[1].split("\t", 2)
v = json.loads(value)
part, off = sys.argv[3].split("/")
assert v["topic"] == sys.argv[2] and v["partition"] == int(part) and v["offset"] == int(off), v
assert v["key"] == sys.argv[4], v
assert len(base64.b64decode(v["value_base64"])) == 200, v
assert "undecodable" in v["reason"] and reason == v["reason"], (reason, v)
assert v["at"].endswith("Z"), v
PY
        line=$(grep "^$topic/$gap_at	" <<<"$dlq" | grep "\"target\":\"$t\"")
        [ -n "$line" ]
        [[ "$line" == *"version"* ]]
    done
    [ "$(proj_metric 'kcqrs_projector_dead_letters_total{target="lmdb"}')" -ge 2 ]
    [ "$(proj_metric 'kcqrs_projector_dead_letters_total{target="pg"}')" -ge 2 ]

    # kcqrs-dlq list: one line per dead letter, the same as the topic holds
    run "$KCQRS_BIN/kcqrs-dlq" list
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq "$(wc -l <<<"$dlq")" ]
    for t in lmdb pg; do
        grep -q "^$topic/$junk_at	$t	[0-9T:.-]*Z	undecodable" <<<"$output"
        grep -q "^$topic/$gap_at	$t	[0-9T:.-]*Z	.*version" <<<"$output"
    done
    run "$KCQRS_BIN/kcqrs-dlq" list --json
    [ "$status" -eq 0 ]
    [[ "$output" != *value_base64* ]]
    python3 -c '
import json, sys
ls = [json.loads(l) for l in sys.stdin]
assert all({"topic", "partition", "offset", "target", "reason", "at", "dlq_offset"} <= set(d) for d in ls), ls' <<<"$output"
    # kcqrs-dlq show: the refused record decoded (the gap event), or why it does not decode
    run "$KCQRS_BIN/kcqrs-dlq" show "$topic/$gap_at"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    python3 -c '
import json, sys
ls = [json.loads(l) for l in sys.stdin]
assert sorted(d["target"] for d in ls) == ["lmdb", "pg"], ls
assert all(d["event"]["aggregate_id"] == sys.argv[1] and d["event"]["version"] == 3 for d in ls), ls' "$gap" <<<"$output"
    run "$KCQRS_BIN/kcqrs-dlq" show "$topic/$junk_at"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == *'"event_error":'* && "${lines[0]}" != *'"event":'* ]]
    run "$KCQRS_BIN/kcqrs-dlq" show "$topic/0/999999999"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no dead letter for"* ]]
    for bad in "" "$topic" "$topic/x/1" "$topic/1/" "/1/2"; do
        run "$KCQRS_BIN/kcqrs-dlq" show "$bad"
        [ "$status" -eq 2 ]
    done
}

@test "records in the wrong partition or topic, or under a key that does not match, are refused" {
    id=$(new_id)
    kq_tool kq_produce_raw event "$id" 1
    part=$(partition_for "$id" "${KCQRS_PARTITIONS:-6}")
    kq_tool kq_produce_raw event "$id" 2 --type updated --name wrong-partition \
        --partition $(((part + 1) % ${KCQRS_PARTITIONS:-6}))
    kq_tool kq_produce_raw event "$id" 2 --type updated --name wrong-topic --topic workflow
    kq_tool kq_produce_raw event "$id" 2 --type updated --name wrong-key --key "$id/00000000000000000007"
    kq_tool kq_produce_raw event "$id" 2 --type updated --name right
    kq_wait_for 30 rmcheck --pg "$KCQRS_PG_DSN"
    [ "$(kq_psql -c "select name || ' ' || version from resources where id = '$id'")" = "right 2" ]
    dlq=$(kq_tool kq_rmcheck --dump-dlq)
    grep -q "aggregate belongs to partition $part" <<<"$dlq"
    grep -q "in topic $KCQRS_TOPIC_PREFIX.workflow.events" <<<"$dlq"
    grep -q "record key does not match" <<<"$dlq"
}

@test "SIGTERM: the projector finishes its batch and exits 0" {
    proj_stop
    proj_start
    proj_wait_ready 60
}

# kcqrs-dlq on this file's LMDB read model.
dlq() { KCQRS_LMDB_DIR="$PROJ_LMDB" "$KCQRS_BIN/kcqrs-dlq" "$@"; }

# Last in the file: a redriven record makes the read models differ from a
# replay of this (forged) log, which kq_rmcheck would report.
@test "kcqrs-dlq redrive: a dead letter is re-applied to the models that refused it once they hold the version before it; nothing is appended" {
    topic="$KCQRS_TOPIC_PREFIX.resource.events"
    id=$(new_id)
    key="$id/00000000000000000002"
    # version 2 before version 1: both read models refuse it (a gap)
    kq_tool kq_produce_raw event "$id" 2 --type updated --name redriven
    at=$(kq_tool kq_offsets dump "$topic" | awk -v k="$key" '$3 == k { print $1 "/" $2 }')
    [ -n "$at" ]
    for t in lmdb pg; do
        kq_wait_for 30 bash -c "'$KCQRS_BIN/kcqrs-dlq' list | grep -q '^$topic/$at	$t	'"
    done
    run dlq redrive --dry-run "$topic/$at"
    echo "$output"
    [ "$status" -eq 0 ]
    for t in lmdb pg; do
        grep -qx "$topic/$at	$t	skipped	resource $id version 2; $t at version 0 (events before this one are missing)" <<<"$output"
    done
    # its first event arrives later in the log: now each model holds version 1
    kq_tool kq_produce_raw event "$id" 1
    kq_wait_for 30 bash -c "[ \"\$(PGOPTIONS='-c search_path=${KCQRS_PG_SCHEMA:-kcqrs}' psql -XAtq -d '$KCQRS_PG_DSN' -c \"select version from resources where id = '$id'\")\" = 1 ]"
    kq_wait_for 30 bash -c "'$KCQRS_TOOLS/kq_rmtool' dump '$PROJ_LMDB/readmodel' | grep -q '^$id active 1 '"
    ends=$(kq_tool kq_offsets sum "$topic"; kq_tool kq_offsets sum "$KCQRS_TOPIC_PREFIX.dlq")
    run dlq redrive --dry-run "$topic/$at"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 3 ] # two items and the summary (stderr)
    for t in lmdb pg; do
        grep -qx "$topic/$at	$t	would_apply	resource $id version 2; $t at version 1" <<<"$output"
    done
    [[ "$output" == *"redrive --dry-run: 0 applied, 2 would apply, 0 skipped"* ]]
    [ "$(kq_psql -c "select name || ' ' || version from resources where id = '$id'")" != "redriven 2" ]
    # the redrive, through the projector's own apply code, while the projector runs
    run dlq redrive "$topic/$at"
    echo "$output"
    [ "$status" -eq 0 ]
    for t in lmdb pg; do
        grep -qx "$topic/$at	$t	applied	resource $id version 2; $t at version 1" <<<"$output"
    done
    [ "$(kq_psql -c "select name || ' ' || version from resources where id = '$id'")" = "redriven 2" ]
    [ "$(kq_psql -c "select count(*) from events where aggregate_id = '$id'")" = 2 ]
    "$KCQRS_TOOLS/kq_rmtool" dump "$PROJ_LMDB/readmodel" | grep -qx "$id active 2 redriven"
    # every dead letter again: this one is now had by both, the others (junk, gaps,
    # wrong partition/topic/key of the tests before) are skipped with their reason
    run dlq redrive
    echo "$output"
    [ "$status" -eq 0 ]
    for t in lmdb pg; do
        grep -qx "$topic/$at	$t	skipped	resource $id version 2; $t at version 2 (it has this event already)" <<<"$output"
    done
    grep -q "	skipped	refused by the projector's check: undecodable envelope" <<<"$output"
    grep -q "	skipped	refused by the projector's check: aggregate belongs to partition" <<<"$output"
    ! grep -q "	applied	" <<<"$output" || false
    # nothing was appended to the event topic or the dead-letter topic
    [ "$(kq_tool kq_offsets sum "$topic"; kq_tool kq_offsets sum "$KCQRS_TOPIC_PREFIX.dlq")" = "$ends" ]
    for bad in "--bogus" "$topic/x/1" "--dry-run --dry-run"; do
        run dlq redrive $bad
        [ "$status" -eq 2 ]
    done
    run dlq redrive "$topic/0/999999999"
    [ "$status" -eq 1 ]
}
