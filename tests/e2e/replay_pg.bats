#!/usr/bin/env bats
# replay_pg.bats — kcqrs-replay --target pg against a real Kafka and
# PostgreSQL: the read model in its own schema (the query API answers 503
# while it does not exist), the disaster drill (database dropped, rebuilt from
# the log, equal to what the projector had built), verify (equal, then a row
# changed behind the projector's back is named), the run history pruned to
# KCQRS_REPLAY_RUNS_KEEP rows per target, the rebuild lock ("busy"),
# a rebuild switched in under a running projector while commands arrive and
# the query API answers, named snapshots.
#
# Equality is checked with oracles independent of rp_pg.c and rp_fp:
# pg_digest (md5 of every row's text, by psql) and kq_rmcheck (the log folded
# again in the tool and compared with the PostgreSQL tables).

load helpers
load commands_helpers
load projector_helpers
load replay_pg_helpers

svc_stop() {
    [[ -f "$BATS_FILE_TMPDIR/$1.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/$1.pid")" 10
    rm -f "$BATS_FILE_TMPDIR/$1.pid"
}

# qry_start: kcqrs-query on a free port (URL in $BATS_FILE_TMPDIR/q.url).
qry_start() {
    local port
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/q.url"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-q" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        kq_bg "$BATS_FILE_TMPDIR/q.log.$(date +%s%N)" "$KCQRS_BIN/kcqrs-query" \
        >"$BATS_FILE_TMPDIR/q.pid"
    kq_wait_port "$port" 30
}
qurl() { cat "$BATS_FILE_TMPDIR/q.url"; }
# qget PATH [KEY]: HTTP status of a GET on the query API.
qget() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        -H "Authorization: Bearer ${2:-$KQ_KEY_READER}" "$(qurl)$1"
}

setup_file() {
    # topics of their own even on servers reused between runs (KQ_E2E_BROKERS)
    echo "$KCQRS_TOPIC_PREFIX.$(date +%s)" >"$BATS_FILE_TMPDIR/prefix"
    setup
    kq_fresh_db replay_pg
    export KCQRS_PG_SCHEMA=kcqrs
    cmd_make_keys
    export KQ_KEY_AUDITOR
    KQ_KEY_AUDITOR=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-auditor --roles auditor \
        --file "$KCQRS_KEYS_FILE")
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-q"
    # resources (created, updated, deleted) and workflows
    kq_tool kq_produce_raw load 6000 --ids 600 --prefix rp >/dev/null
    # records both the projector and the rebuild must refuse the same way: a
    # version gap, a duplicate version, an update of a deleted resource's slot
    kq_tool kq_produce_raw event rp-gap 1 >/dev/null
    kq_tool kq_produce_raw event rp-gap 3 --type updated --name skipped >/dev/null
    kq_tool kq_produce_raw event rp-dup 1 --name first >/dev/null
    kq_tool kq_produce_raw event rp-dup 1 --name second >/dev/null
    kq_tool kq_produce_raw event rp-dup 2 --type updated --status archived >/dev/null
}

setup() {
    KCQRS_TOPIC_PREFIX=$(cat "$BATS_FILE_TMPDIR/prefix")
    export KCQRS_TOPIC_PREFIX
}

teardown_file() {
    setup
    local rc=0 f
    svc_stop q
    proj_stop || rc=1
    cmd_stop_all || rc=1
    proj_no_sanitizer_report || rc=1
    for f in "$BATS_FILE_TMPDIR"/q.log.* "$BATS_FILE_TMPDIR/replay.log"; do
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" 2>/dev/null; then
            echo "$f: sanitizer report:" >&2
            grep -E -A 24 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -80 >&2
            rc=1
        fi
    done
    return $rc
}

@test "the read model lives in schema KCQRS_PG_SCHEMA; the query API answers 503 until it exists" {
    [ -z "$(pg_schemas)" ]
    qry_start
    [ "$(qget /api/v1/resources/rp-1/events)" = 503 ]
    [ "$(qget /api/v1/audit "$KQ_KEY_AUDITOR")" = 503 ]
    proj_catch_up pg
    [ "$(pg_schemas)" = kcqrs ]
    # nothing in public: every table is in the schema, migrations included
    [ "$(kq_psql -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")" = 0 ]
    [ "$(kq_psql -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'kcqrs'
                     AND tablename IN ('events', 'resources', 'aggregate_versions',
                     'projection_offsets', 'schema_migrations')")" = 5 ]
    [ "$(qget /api/v1/audit "$KQ_KEY_AUDITOR")" = 200 ]
    id=$(kq_psql -c "SELECT aggregate_id FROM events WHERE aggregate_type = 'resource' LIMIT 1")
    [ "$(qget "/api/v1/resources/$id/events")" = 200 ]
    svc_stop q # kq_fresh_db below needs the database without connections
}

@test "drill: database dropped, rebuilt from the log, equal to the projector's model" {
    proj_catch_up pg
    before=$(pg_digest)
    indexes=$(pg_indexes)
    echo "$before"
    [ "$(echo "$before" | awk '$1 == "events" { print $2 }')" = 6003 ]
    [ "$(echo "$indexes" | wc -l)" -ge 10 ]

    kq_fresh_db replay_pg # the database is gone
    # small bulk transactions: the in-memory fold of versions and resources
    # carries across many of them
    KCQRS_REPLAY_BATCH_MAX=700 rp_replay rebuild --target pg
    [ "$RP_RC" -eq 0 ]
    after=$(pg_digest)
    echo "$after"
    [ "$after" = "$before" ]
    # the deferred secondary indexes are back, identical
    [ "$(pg_indexes)" = "$indexes" ]
    [ "$(pg_schemas)" = kcqrs ] # no live model before: nothing retired, no shadow left
    rmcheck --no-lmdb --pg "$KCQRS_PG_DSN"
    # the projector continues on the rebuilt model: nothing new to apply
    proj_catch_up pg
    [ "$(pg_digest)" = "$before" ]
}

@test "verify: equal exits 0; a row changed behind the projector's back is named, exit 1" {
    rp_replay verify --target pg
    [ "$RP_RC" -eq 0 ]
    [ "$(pg_schemas)" = kcqrs ] # the verify shadow is dropped

    id=$(kq_psql -c "SELECT id FROM resources ORDER BY id LIMIT 1")
    kq_psql -v id="$id" <<<"UPDATE resources SET name = 'tampered' WHERE id = :'id'"
    rp_replay verify --target pg
    [ "$RP_RC" -eq 1 ]
    echo "$RP_OUT" | grep -F "$id" | grep -q differs

    vid=$(kq_psql -c "SELECT aggregate_id FROM aggregate_versions ORDER BY 1 DESC LIMIT 1")
    kq_psql -v id="$vid" <<<"DELETE FROM aggregate_versions WHERE aggregate_id = :'id'"
    rp_replay verify --target pg
    [ "$RP_RC" -eq 1 ]
    echo "$RP_OUT" | grep -F "$vid" | grep -q "missing in live"

    # a rebuild repairs it
    rp_replay rebuild --target pg
    [ "$RP_RC" -eq 0 ]
    rp_replay verify --target pg
    [ "$RP_RC" -eq 0 ]
    [ "$(kq_psql -v id="$id" <<<"SELECT name FROM resources WHERE id = :'id'")" != tampered ]
    # every run left its result, the differences counted and named
    run replay_runs 5
    echo "$output"
    [ "$output" = "verify pg succeeded 0
verify pg differences 1
verify pg differences 2
rebuild pg succeeded -
verify pg succeeded 0" ]
    kq_psql -v id="$id" <<<"SELECT detail FROM kcqrs_history.replay_runs
                             WHERE outcome = 'differences' ORDER BY id LIMIT 1" | grep -F "$id" | grep -q differs
    [ "$(kq_psql -c "SELECT count(*) FROM kcqrs_history.replay_runs
                     WHERE finished_at < started_at OR events < 1")" = 0 ]
}

@test "the run history keeps the newest KCQRS_REPLAY_RUNS_KEEP rows of each target" {
    local h=kcqrs_history.replay_runs before newest
    # five more rows of another target, older than any run to come
    kq_psql -c "INSERT INTO $h (kind, target, started_at, finished_at, events, outcome)
                SELECT 'rebuild', 'lmdb', now(), now(), g, 'succeeded' FROM generate_series(1, 5) g"
    before=$(kq_psql -c "SELECT count(*) FROM $h WHERE target = 'pg'")
    [ "$before" -ge 4 ] || kq_fail "expected the earlier tests' pg runs, found $before"
    newest=$(kq_psql -c "SELECT string_agg(id::text, ' ' ORDER BY id) FROM
                         (SELECT id FROM $h WHERE target = 'pg' ORDER BY id DESC LIMIT 2) r")
    KCQRS_REPLAY_RUNS_KEEP=3 rp_replay verify --target pg
    [ "$RP_RC" -eq 0 ]
    # pg: the two newest rows of before and this run's; lmdb: its three newest
    [ "$(kq_psql -c "SELECT count(*) FROM $h WHERE target = 'pg'")" = 3 ]
    [ "$(kq_psql -c "SELECT string_agg(id::text, ' ' ORDER BY id) FROM
                     (SELECT id FROM $h WHERE target = 'pg' ORDER BY id LIMIT 2) r")" = "$newest" ]
    [ "$(kq_psql -c "SELECT string_agg(events::text, ' ' ORDER BY id) FROM $h
                     WHERE target = 'lmdb'")" = "3 4 5" ]
    run replay_runs 1
    [ "$output" = "verify pg succeeded 0" ]
    # the default keeps 100: nothing more goes
    rp_replay verify --target pg
    [ "$(kq_psql -c "SELECT count(*) FROM $h")" = 7 ]
    # a bad value is refused before anything runs
    KCQRS_REPLAY_RUNS_KEEP=0 rp_replay verify --target pg
    [ "$RP_RC" -ne 0 ]
    [[ "$RP_OUT" == *KCQRS_REPLAY_RUNS_KEEP* ]]
    [ "$(kq_psql -c "SELECT count(*) FROM $h")" = 7 ]
}

@test "a second rebuild or verify while one runs is refused as busy" {
    before=$(pg_digest)
    # hold the read model lock: the first rebuild builds its shadow, then waits
    # in lock_live holding the rebuild lock
    PGAPPNAME=kq_holder kq_bg "$BATS_FILE_TMPDIR/holder.log" psql -X -q -d "$KCQRS_PG_DSN" \
        -c "SELECT pg_advisory_lock(hashtext('kcqrs.readmodel:kcqrs'))" -c "SELECT pg_sleep(60)" \
        >"$BATS_FILE_TMPDIR/holder.pid"
    kq_wait_for 10 bash -c "[[ \$(psql -X -At -d '$KCQRS_PG_DSN' -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted\") -ge 1 ]]"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb" kq_bg "$BATS_FILE_TMPDIR/first.log" \
        "$KCQRS_BIN/kcqrs-replay" rebuild --target pg >"$BATS_FILE_TMPDIR/first.pid"
    first=$(cat "$BATS_FILE_TMPDIR/first.pid")
    kq_wait_for 60 bash -c "[[ \$(psql -X -At -d '$KCQRS_PG_DSN' -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted\") -ge 1 ]]"

    rp_replay rebuild --target pg
    [ "$RP_RC" -ne 0 ]
    echo "$RP_OUT" | grep -qi busy
    rp_replay verify --target pg
    [ "$RP_RC" -ne 0 ]
    echo "$RP_OUT" | grep -qi busy
    kill -0 "$first" # the first one still waits
    [ "$(pg_digest)" = "$before" ]

    # end the holder's session (a sleeping backend does not notice its client leave)
    kq_psql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name = 'kq_holder'" >/dev/null
    kq_stop "$(cat "$BATS_FILE_TMPDIR/holder.pid")" 5
    kq_wait_for 60 kq_gone "$first"
    wait "$first" 2>/dev/null || true
    cat "$BATS_FILE_TMPDIR/first.log"
    grep -q "is now the live read model" "$BATS_FILE_TMPDIR/first.log"
    [ "$(pg_schemas)" = "$(printf 'kcqrs\nkcqrs_retired')" ]
    [ "$(pg_digest)" = "$before" ]
}

@test "rebuild under a running projector and incoming commands: switched, nothing lost or doubled" {
    cmd_start cmd
    proj_start --target pg
    qry_start
    create_resource "sw-1" "switch witness"
    kq_wait_for 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $KQ_KEY_READER' '$(qurl)/api/v1/resources/sw-1/events') == 200 ]]"
    oid_before=$(kq_psql -c "SELECT oid FROM pg_namespace WHERE nspname = 'kcqrs'")

    # readers of the PostgreSQL model during the whole rebuild and switch
    (
        while [[ ! -e "$BATS_FILE_TMPDIR/poll.stop" ]]; do
            curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
                -H "Authorization: Bearer $KQ_KEY_READER" "$(qurl)/api/v1/resources/sw-1/events"
            sleep 0.02
        done >"$BATS_FILE_TMPDIR/poll.codes"
    ) 3>&- &
    poller=$!
    load_start "$CMD_URL" "$BATS_FILE_TMPDIR/ledger" 2
    sleep 2
    rp_replay rebuild --target pg
    [ "$RP_RC" -eq 0 ]
    sleep 2
    load_stop "$BATS_FILE_TMPDIR/ledger"
    touch "$BATS_FILE_TMPDIR/poll.stop"
    wait "$poller"

    # the projector noticed the switch, reopened and continued from the
    # rebuilt model's offsets: the model equals the log (no event missing,
    # none applied twice, offsets at the end)
    [ "$(kq_psql -c "SELECT oid FROM pg_namespace WHERE nspname = 'kcqrs'")" != "$oid_before" ]
    kq_wait_for 60 grep -q "was replaced" "$BATS_FILE_TMPDIR/projector.cur.log"
    kill -0 "$(cat "$BATS_FILE_TMPDIR/proj.pid")"
    kq_wait_for 60 rmcheck --no-lmdb --pg "$KCQRS_PG_DSN" --quiet
    rmcheck --no-lmdb --pg "$KCQRS_PG_DSN"
    ledger_check "$BATS_FILE_TMPDIR/ledger"
    acked=$(awk '$2 == 201' "$BATS_FILE_TMPDIR/ledger" | wc -l)
    [ "$acked" -gt 0 ]
    # every acknowledged create is in the switched-in model exactly once
    [ "$(awk '$2 == 201 { print $1 }' "$BATS_FILE_TMPDIR/ledger" | sort -u | wc -l)" = "$acked" ]
    for id in $(awk '$2 == 201 { print $1 }' "$BATS_FILE_TMPDIR/ledger" | head -50); do
        [ "$(kq_psql -v id="$id" <<<"SELECT count(*) FROM events WHERE aggregate_id = :'id'")" = 1 ]
    done
    # the query API kept answering 200 through the switch
    total=$(wc -l <"$BATS_FILE_TMPDIR/poll.codes")
    bad=$(grep -vc '^200$' "$BATS_FILE_TMPDIR/poll.codes" || true)
    echo "polls=$total non-200=$bad"
    [ "$total" -gt 20 ]
    [ "$bad" -eq 0 ]
    [ "$(qget /api/v1/resources/sw-1/events)" = 200 ]
    [ "$(pg_schemas)" = "$(printf 'kcqrs\nkcqrs_retired')" ]
    # and the model the projector keeps extending verifies
    rp_replay verify --target pg
    [ "$RP_RC" -eq 0 ]
}

@test "named snapshot: its own schema beside the live one; drop-snapshot removes it" {
    live=$(pg_digest)
    rp_replay rebuild --target pg --until-offsets "$KCQRS_TOPIC_PREFIX.resource.events:0=5" --name snap1
    [ "$RP_RC" -eq 0 ]
    pg_schemas | grep -qx kcqrs_snap_snap1
    [ "$(pg_digest)" = "$live" ] # the live model is untouched
    [ "$(kq_psql -c "SELECT next_offset FROM kcqrs_snap_snap1.projection_offsets
                     WHERE topic = '$KCQRS_TOPIC_PREFIX.resource.events' AND partition = 0")" = 5 ]
    [ "$(kq_psql -c "SELECT count(*) FROM kcqrs_snap_snap1.events
                     WHERE topic = '$KCQRS_TOPIC_PREFIX.resource.events' AND partition = 0")" -le 5 ]
    # its indexes were built like the live model's
    [ "$(pg_indexes kcqrs_snap_snap1)" = "$(pg_indexes kcqrs)" ]

    rp_replay drop-snapshot --target pg --name snap1
    [ "$RP_RC" -eq 0 ]
    [ -z "$(pg_schemas | grep snap1)" ]
    rp_replay drop-snapshot --target pg --name snap1
    [ "$RP_RC" -ne 0 ]
    rp_replay drop-snapshot --target pg --name 'Bad-Name'
    [ "$RP_RC" -eq 2 ]
}
