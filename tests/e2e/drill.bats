#!/usr/bin/env bats
# drill.bats — the disaster drill of issue #5: both read models are lost and
# rebuilt from the Kafka log alone, and nobody can tell the difference.
#
#   1. 10,000 commands through kcqrs-commands (creates, updates, deletes);
#      kcqrs-projector applies them to LMDB and PostgreSQL.
#   2. kcqrs-replay verify --target all exits 0 (the live models equal a
#      rebuild of the log); kcqrs-audit verify-chain's heads are kept aside;
#      the query API's answers for a sample (50 resources, every list page,
#      10 histories, 5 audit queries) are kept byte for byte.
#   3. The disaster: projector stopped, the database dropped and created
#      empty, the LMDB directory deleted. kcqrs-query keeps running.
#   4. kcqrs-replay rebuild --target all (timed); verify exits 0 again, and
#      kcqrs-audit verify-chain finds the chain heads recorded before; the
#      query API — not restarted — gives byte-identical answers (it took up
#      the rebuilt LMDB model and reconnected to PostgreSQL).
#   5. The projector starts again on the rebuilt models and applies nothing
#      (they are at the log's end); a new command is applied once.
# The tests of this file run in order and share their state.

load helpers
load commands_helpers
load projector_helpers
load drill_helpers

DRILL_COMMANDS=${DRILL_COMMANDS:-10000}

setup_file() {
    kq_fresh_db drill
    cmd_make_keys
    export KQ_KEY_AUDITOR
    KQ_KEY_AUDITOR=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-auditor --roles auditor \
        --file "$KCQRS_KEYS_FILE")
    proj_init
    cmd_start cmd
    proj_start
    proj_wait_ready 60
    drill_query_start
}

teardown_file() {
    local rc=0
    drill_query_stop
    proj_stop || rc=1
    cmd_stop_all || rc=1
    proj_no_sanitizer_report || rc=1
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$BATS_FILE_TMPDIR/query.log" "$BATS_FILE_TMPDIR"/replay.*.log 2>/dev/null; then
        echo "sanitizer report:" >&2
        grep -hE -A 20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
            "$BATS_FILE_TMPDIR/query.log" "$BATS_FILE_TMPDIR"/replay.*.log >&2
        rc=1
    fi
    return $rc
}

# replay NAME ARGS...: kcqrs-replay on this file's stores; output in replay.NAME.log.
replay() {
    local name="$1"
    shift
    KCQRS_LMDB_DIR="$PROJ_LMDB" timeout 180 "$KCQRS_BIN/kcqrs-replay" "$@" \
        >"$BATS_FILE_TMPDIR/replay.$name.log" 2>&1 3>&-
}

# The DSN kq_rmcheck reads: the read model's schema first on the search_path.
check_dsn() { echo "$KCQRS_PG_DSN?options=-csearch_path%3D${KCQRS_PG_SCHEMA:-kcqrs}%2Cpublic"; }

@test "drill 1: $DRILL_COMMANDS commands through kcqrs-commands; both read models catch up" {
    run drill_load "$(cmd_url cmd)" "$DRILL_COMMANDS"
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "$output" =~ commands=$DRILL_COMMANDS\  ]]
    run drill_snapshot "$BATS_FILE_TMPDIR/before"
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "${lines[-1]}" -ge 70 ]]
    # the sample is not trivial: resources, 404s of deleted ones, histories, audit pages
    grep -lq '^200' "$BATS_FILE_TMPDIR"/before/get.*
    [[ $(grep -l '^404' "$BATS_FILE_TMPDIR"/before/get.* | wc -l) -ge 1 ]]
    [[ $(grep -c '"event_type"' "$BATS_FILE_TMPDIR/before/audit.1") -ge 1 ]]
    run rmcheck --pg "$(check_dsn)"
    echo "$output"
    [[ "$status" -eq 0 ]]
}

@test "drill 2: kcqrs-replay verify --target all: the live models equal the log; chain heads kept aside" {
    replay verify0 verify --target all || { cat "$BATS_FILE_TMPDIR/replay.verify0.log"; false; }
    cat "$BATS_FILE_TMPDIR/replay.verify0.log"
    grep -q '^lmdb: equal to the log' "$BATS_FILE_TMPDIR/replay.verify0.log"
    grep -q '^pg: equal to the log' "$BATS_FILE_TMPDIR/replay.verify0.log"
    # the runbook's "heads outside Kafka": one TOPIC:PARTITION=HEAD line per partition
    timeout 120 "$KCQRS_BIN/kcqrs-audit" verify-chain >"$BATS_FILE_TMPDIR/heads" 3>&-
    cat "$BATS_FILE_TMPDIR/heads"
    [[ $(grep -cE '^[^ ]+:[0-9]+=[0-9a-f]{64} ' "$BATS_FILE_TMPDIR/heads") -ge 1 ]]
}

@test "drill 3: lose both stores, rebuild --target all from the log alone, verify" {
    local t0 t1
    proj_stop
    # the disaster: PostgreSQL's database and the whole LMDB directory are gone
    drill_admin_psql -c "DROP DATABASE \"${KCQRS_PG_DSN##*/}\" WITH (FORCE)"
    drill_admin_psql -c "CREATE DATABASE \"${KCQRS_PG_DSN##*/}\" OWNER kcqrs"
    rm -rf "$PROJ_LMDB"
    [[ ! -e "$PROJ_LMDB" ]]
    # the query API (still running) cannot answer PostgreSQL routes now
    drill_get "$KQ_KEY_READER" /api/v1/resources/d-00003/events "$BATS_TEST_TMPDIR/gone"
    [[ $(head -n 1 "$BATS_TEST_TMPDIR/gone") == 503 ]]

    t0=$(date +%s.%N)
    replay rebuild rebuild --target all || { cat "$BATS_FILE_TMPDIR/replay.rebuild.log"; false; }
    t1=$(date +%s.%N)
    cat "$BATS_FILE_TMPDIR/replay.rebuild.log"
    echo "rebuild --target all: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s" >&3
    [[ -f "$PROJ_LMDB/readmodel/data.mdb" ]]
    [[ -n $(kq_psql -c "SELECT 1 FROM pg_namespace WHERE nspname = '${KCQRS_PG_SCHEMA:-kcqrs}'") ]]

    replay verify1 verify --target all || { cat "$BATS_FILE_TMPDIR/replay.verify1.log"; false; }
    # the log itself still holds every head recorded before the disaster
    run timeout 120 "$KCQRS_BIN/kcqrs-audit" verify-chain \
        $(grep -oE '^[^ ]+:[0-9]+=[0-9a-f]{64}' "$BATS_FILE_TMPDIR/heads" | sed 's/^/--expect-head /')
    echo "$output"
    [[ "$status" -eq 0 ]]
    grep -q '^lmdb: equal to the log' "$BATS_FILE_TMPDIR/replay.verify1.log"
    grep -q '^pg: equal to the log' "$BATS_FILE_TMPDIR/replay.verify1.log"
    run rmcheck --pg "$(check_dsn)"
    echo "$output"
    [[ "$status" -eq 0 ]]
}

@test "drill 4: the query API, never restarted, answers byte for byte as before the disaster" {
    local url
    url=$(drill_query_url)
    kq_wait_for 10 bash -c "curl -s --max-time 2 -H 'Authorization: Bearer $KQ_KEY_READER' \
        '$url/api/v1/resources/d-00003/events' -o /dev/null -w '%{http_code}' | grep -qx 200"
    run drill_snapshot "$BATS_FILE_TMPDIR/after"
    echo "$output"
    [[ "$status" -eq 0 ]]
    drill_compare "$BATS_FILE_TMPDIR/before" "$BATS_FILE_TMPDIR/after"
    # it is reading the rebuilt LMDB model, not the deleted files it had open
    run curl -s --max-time 5 "$url/metrics"
    [[ "$output" =~ kcqrs_query_readmodel_switches_total\ [1-9] ]]
}

@test "drill 5: the projector continues on the rebuilt models without reapplying; a new command is applied once" {
    local tok
    proj_start
    proj_wait_ready 60
    sleep 2
    [[ $(proj_metric 'kcqrs_projector_events_applied_total{target="lmdb"}') == 0 ]]
    [[ $(proj_metric 'kcqrs_projector_events_applied_total{target="pg"}') == 0 ]]
    cmd_use cmd
    create_resource d-after "after the drill"
    tok=$(jf 'd["consistency_token"]')
    drill_get "$KQ_KEY_READER" /api/v1/resources/d-after "$BATS_TEST_TMPDIR/a" -H "X-Consistency-Token: $tok"
    [[ $(head -n 1 "$BATS_TEST_TMPDIR/a") == 200 ]]
    drill_get "$KQ_KEY_READER" /api/v1/resources/d-after/events "$BATS_TEST_TMPDIR/e" -H "X-Consistency-Token: $tok"
    [[ $(head -n 1 "$BATS_TEST_TMPDIR/e") == 200 ]]
    kq_wait_for 10 bash -c "[[ \$(curl -s '$(proj_url /metrics)' | awk '\$1 == \"kcqrs_projector_events_applied_total{target=\\\"pg\\\"}\" { print \$2 }') == 1 ]]"
    [[ $(proj_metric 'kcqrs_projector_events_applied_total{target="lmdb"}') == 1 ]]
    run rmcheck --pg "$(check_dsn)"
    echo "$output"
    [[ "$status" -eq 0 ]]
}
