#!/usr/bin/env bats
# projector_pg.bats — the PostgreSQL target of kcqrs-projector
# (projections/proj_pg.c, proj_migrate.c) on the suite's real PostgreSQL,
# driven by tests/tools/kq_pgapply from envelope files (JSON files of
# tests/data/events are encoded by the tool like `kcqrs-events encode`).
# kq_pgapply gives file i the offset --offset + i in the topic of its
# aggregate type, partition --partition (default 0). Each test starts from
# its own fresh database. The three write paths (COPY + array merge, the
# default; COPY + staging tables; pipeline) run the content tests.

load helpers
load commands_helpers

teardown_file() {
    cmd_stop_all
}

teardown() {
    local n
    for n in a b; do
        [[ -f "$BATS_TEST_TMPDIR/$n.pid" ]] && kq_stop "$(cat "$BATS_TEST_TMPDIR/$n.pid")" 20
        [[ -z "${BATS_TEST_COMPLETED:-}" && -f "$BATS_TEST_TMPDIR/$n.log" ]] &&
            tail -n 30 "$BATS_TEST_TMPDIR/$n.log" >&2
    done
    return 0
}

DATA="$KQ_REPO/tests/data/events"
# Every event type, in an order where each aggregate's versions follow each
# other; run-77 starts at version 4 (tests seed version 3 for it). The run
# events follow THE run fold (events/ev_run.h) once run_variants has made
# them a run's sequence (seed_runs seeds run-77 and run-0).
ALL=(resource_created resource_updated resource_deleted
    workflow_created workflow_updated workflow_enabled workflow_disabled workflow_deleted
    run_started step_attempted step_succeeded run_succeeded step_failed run_failed
    edge_long_strings edge_empty_steps edge_optional_zero_attempted edge_optional_zero)

files() {
    local f
    for f in "$@"; do
        if [ -f "$BATS_TEST_TMPDIR/variants/$f.json" ]; then
            printf '%s\n' "$BATS_TEST_TMPDIR/variants/$f.json"
        else
            printf '%s\n' "$DATA/$f.json"
        fi
    done
}

# The run events of tests/data/events as sequences the run fold accepts, in
# $BATS_TEST_TMPDIR/variants (files() prefers them): the attempt of run
# 3b24... is its step 0's first (then step 0 succeeds and RunSucceeded ends
# the run early); run-0's attempt (version 2) comes before its StepSucceeded
# (version 3), after the RunStarted seed_runs records.
run_variants() {
    mkdir -p "$BATS_TEST_TMPDIR/variants"
    python3 - "$DATA" "$BATS_TEST_TMPDIR/variants" <<'PY'
import json, sys
src, dst = sys.argv[1], sys.argv[2]
def variant(name, version=None, **payload):
    d = json.load(open(f"{src}/{name}.json"))
    if version is not None:
        d["version"] = version
    d["payload"].update(payload)
    json.dump(d, open(f"{dst}/{name}.json", "w"))
variant("step_attempted", step=0, attempt=1)
variant("step_succeeded", step=0)
variant("edge_optional_zero_attempted", version=2)
variant("edge_optional_zero", version=3)
PY
}

# Runs whose earlier events the tests do not apply: run-77 at version 3 with
# steps 0 and 1 succeeded (its StepFailed is for step 2), run-0 at version 1.
seed_runs() {
    kq_psql -c "INSERT INTO aggregate_versions VALUES ('run', 'run-77', 3), ('run', 'run-0', 1)"
    kq_psql -c "INSERT INTO runs (id, workflow_id, workflow_version, trigger, status, payload, steps, version, created_at, updated_at) VALUES
        ('run-77', 'wf', 1, 'manual', 'running', '{}', '[{\"index\":0,\"status\":\"succeeded\"},{\"index\":1,\"status\":\"succeeded\"},{\"index\":2,\"status\":\"pending\"}]', 3, now(), now()),
        ('run-0', 'wf', 1, 'manual', 'pending', '{}', '[{\"index\":0,\"status\":\"pending\"}]', 1, now(), now())"
}

# kq_pgapply with warnings and errors only on stderr (the migration test asks for info).
pgapply() {
    KCQRS_LOG_LEVEL="${KCQRS_LOG_LEVEL:-warn}" kq_tool kq_pgapply "$@"
}

# fresh NAME: a fresh database for this test.
fresh() {
    kq_fresh_db "pg_$1"
}

# A variant of resource_updated.json with another version and only `status`.
status_only_update() {
    python3 - "$DATA/resource_updated.json" "$1" "$2" >"$3" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["version"] = int(sys.argv[2])
d["payload"] = {"status": sys.argv[3]}
d["event_id"][15] = int(sys.argv[2])
print(json.dumps(d))
PY
}

@test "migrations are applied once and recorded with their checksum" {
    fresh migrate
    export KCQRS_LOG_LEVEL=info
    run pgapply --migrate
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"schema migration 0001_init.sql applied"* ]]
    run kq_psql -c "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    echo "$output"
    sum=$(sha256sum "$KQ_REPO/ops/sql/0001_init.sql" | cut -d' ' -f1)
    [ "${lines[0]}" = "1|0001_init.sql|$sum" ]
    [ "$(kq_psql -c 'SELECT count(*) FROM schema_migrations')" = "$(ls "$KQ_REPO"/ops/sql/*.sql | wc -l)" ]
    before=$(kq_psql -c "SELECT applied_at FROM schema_migrations WHERE version = 1")
    # a second start applies nothing
    run pgapply --migrate
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"applied"* ]]
    [ "$(kq_psql -c "SELECT applied_at FROM schema_migrations WHERE version = 1")" = "$before" ]
    [ "$(kq_psql -c "SELECT count(*) FROM pg_tables WHERE tablename IN ('events', 'resources', 'aggregate_versions', 'projection_offsets')")" = 4 ]
}

@test "a recorded migration whose checksum differs from the file is refused" {
    fresh tamper
    pgapply --migrate
    kq_psql -c "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1"
    run pgapply --migrate
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"0001_init.sql: recorded checksum 000000000000... differs"* ]]
    # applying events is refused too, and nothing was written
    run pgapply "$DATA/resource_created.json"
    [ "$status" -ne 0 ]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 0 ]
}

@test "two processes starting together migrate once (advisory lock)" {
    fresh race
    export KCQRS_LOG_LEVEL=info
    pgapply --migrate >"$BATS_TEST_TMPDIR/a" 2>&1 &
    a=$!
    pgapply --migrate >"$BATS_TEST_TMPDIR/b" 2>&1 &
    b=$!
    wait "$a"
    wait "$b"
    cat "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
    [ "$(cat "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" | grep -c '0001_init.sql applied')" = 1 ]
    [ "$(kq_psql -c 'SELECT count(*) FROM schema_migrations')" = "$(ls "$KQ_REPO"/ops/sql/*.sql | wc -l)" ]
}

# check_every_type PATH: every event type lands in `events` with the payload
# and envelope that `kcqrs-events decode` prints.
check_every_type() {
    fresh "types_$1"
    pgapply --migrate
    seed_runs
    run_variants
    mapfile -t fs < <(files "${ALL[@]}")
    run pgapply --path "$1" "${fs[@]}"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *dead_letter* ]]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = "${#ALL[@]}" ]
    [ "$(kq_psql -c 'SELECT count(DISTINCT event_type) FROM events')" = 14 ]
    for f in "${fs[@]}"; do
        json=$("$KCQRS_BIN/kcqrs-events" encode <"$f" | "$KCQRS_BIN/kcqrs-events" decode)
        uuid=$(python3 -c 'import json, sys, uuid; print(uuid.UUID(bytes=bytes(json.load(sys.stdin)["event_id"])))' <<<"$json")
        got=$(kq_psql -v j="$json" -v u="$uuid" <<'SQL'
-- secrets are stored as "[redacted]"; everything else as decoded
SELECT e.payload = (SELECT CASE WHEN p ? 'webhook_secret'
                                THEN jsonb_set(p, '{webhook_secret}', '"[redacted]"')
                                WHEN p ? 'signing_secret'
                                THEN jsonb_set(p, '{signing_secret}', '"[redacted]"')
                                ELSE p END FROM (SELECT (:'j'::jsonb)->'payload' AS p) x)
   AND e.event_type = (:'j'::jsonb)->>'payload_type'
   AND e.aggregate_type = coalesce((:'j'::jsonb)->>'aggregate_type', 'unknown')
   AND e.version = coalesce(((:'j'::jsonb)->>'version')::bigint, 0)
   AND e.occurred_at_us = coalesce(((:'j'::jsonb)->>'occurred_at_us')::bigint, 0)
   AND e.occurred_at = timestamptz 'epoch' + e.occurred_at_us * interval '1 microsecond'
   AND e.actor IS NOT DISTINCT FROM (:'j'::jsonb)->>'actor'
   AND e.command_id IS NOT DISTINCT FROM (:'j'::jsonb)->>'command_id'
   AND e.correlation_id IS NOT DISTINCT FROM (:'j'::jsonb)->>'correlation_id'
   AND e.schema_version = coalesce(((:'j'::jsonb)->>'schema_version')::int, 1)
   AND (e.prev_hash IS NULL) = ((:'j'::jsonb)->'prev_hash' IS NULL)
FROM events e WHERE e.event_id = :'u'::uuid
SQL
        )
        echo "$f: $got"
        [ "$got" = t ]
    done
    # prev_hash bytes where the JSON has them
    run kq_psql -c "SELECT count(*) FROM events WHERE prev_hash IS NOT NULL AND length(prev_hash) = 32"
    [ "$output" = "$(grep -l '"prev_hash"' "${fs[@]}" | wc -l)" ]
}

@test "events of every type land in events with the payload kcqrs-events decode prints (COPY)" {
    check_every_type copy
}

@test "events of every type land in events with the payload kcqrs-events decode prints (pipeline)" {
    check_every_type pipeline
}

@test "events of every type land in events with the payload kcqrs-events decode prints (COPY + staging tables)" {
    check_every_type copy_staging
}

# check_resources PATH
check_resources() {
    fresh "res_$1"
    status_only_update 4 active "$BATS_TEST_TMPDIR/u4.json"
    # created and updated in one batch: one upsert with the final state
    pgapply --path "$1" "$DATA/resource_created.json" "$DATA/resource_updated.json"
    run kq_psql -c "SELECT id, name, description, status, version, created_at = timestamptz 'epoch' + 1763764800123456 * interval '1 microsecond', updated_at = timestamptz 'epoch' + 1763764900000000 * interval '1 microsecond' FROM resources"
    echo "$output"
    [ "$output" = "res-42|Build server (old)|Replaced by res-43; kept for the audit trail.|archived|2|t|t" ]
    # deleted, then (in a later batch) an update of the deleted resource changes nothing
    pgapply --path "$1" --offset 2 "$DATA/resource_deleted.json"
    [ "$(kq_psql -c 'SELECT count(*) FROM resources')" = 0 ]
    [ "$(kq_psql -c "SELECT version FROM aggregate_versions WHERE aggregate_id = 'res-42'")" = 3 ]
    pgapply --path "$1" --offset 3 "$BATS_TEST_TMPDIR/u4.json"
    [ "$(kq_psql -c 'SELECT count(*) FROM resources')" = 0 ]
    [ "$(kq_psql -c "SELECT version FROM aggregate_versions WHERE aggregate_id = 'res-42'")" = 4 ]

    # an update whose create was in an earlier batch patches only its fields
    fresh "res2_$1"
    status_only_update 3 active "$BATS_TEST_TMPDIR/u3.json"
    pgapply --path "$1" "$DATA/resource_created.json"
    pgapply --path "$1" --offset 1 "$BATS_TEST_TMPDIR/u3.json" 2>&1 | grep -q dead_letter # version 3 after 1: gap
    [ "$(kq_psql -c "SELECT status, version FROM resources")" = "inactive|1" ]
    status_only_update 2 active "$BATS_TEST_TMPDIR/u2.json"
    pgapply --path "$1" --offset 2 "$BATS_TEST_TMPDIR/u2.json"
    run kq_psql -c "SELECT name, description, status, version, updated_at = timestamptz 'epoch' + 1763764900000000 * interval '1 microsecond' FROM resources"
    echo "$output"
    [ "$output" = "Build server|Runs the nightly builds.|active|2|t" ]
}

@test "resources are created, updated and deleted (COPY)" {
    check_resources copy
}

@test "resources are created, updated and deleted (pipeline)" {
    check_resources pipeline
}

@test "resources are created, updated and deleted (COPY + staging tables)" {
    check_resources copy_staging
}

# run_seq DIR: run 3b24... of run_started.json (2 steps) as files v2.json ..
# v7.json: an attempt of step 0, its success, an attempt of step 1, its
# failure, RunFailed, then an attempt after the end.
run_seq() {
    python3 - "$DATA/run_started.json" "$DATA/step_attempted.json" "$1" <<'PY'
import json, sys
started, attempted, dst = sys.argv[1], sys.argv[2], sys.argv[3]
base = json.load(open(attempted))
evs = [("StepAttempted", {"step": 0, "attempt": 1, "duration_ms": 5, "next_delay_ms": 100}),
       ("StepSucceeded", {"step": 0, "attempt": 1}),
       ("StepAttempted", {"step": 1, "attempt": 1, "duration_ms": 5}),
       ("StepFailed", {"step": 1, "attempt": 1, "error": "boom"}),
       ("RunFailed", {"step": 1, "error": "boom"}),
       ("StepAttempted", {"step": 1, "attempt": 2, "duration_ms": 5})]
for i, (t, p) in enumerate(evs):
    d = dict(base)
    d["version"] = i + 2
    d["payload_type"] = t
    d["payload"] = p
    d["event_id"] = list(base["event_id"])
    d["event_id"][15] = 100 + i
    json.dump(d, open(f"{dst}/v{i + 2}.json", "w"))
PY
}

@test "run rows follow the run fold across batches (state read back from the rows); a refused run event is dead-lettered" {
    fresh runfold
    run_seq "$BATS_TEST_TMPDIR"
    rows() { kq_psql -c "SELECT status || ' ' || version || ' ' || coalesce(error, '-') || ' ' || (SELECT string_agg(s->>'status', ',') FROM jsonb_array_elements(steps) s) || ' ' || (SELECT count(*) FROM run_attempts a WHERE a.run_id = r.id) FROM runs r"; }
    pgapply "$DATA/run_started.json" >/dev/null
    [ "$(rows)" = "pending 1 - pending,pending 0" ]
    for v in 2 3 4 5 6 7; do # one batch each: the state comes from the rows every time
        run pgapply --offset $((v - 1)) "$BATS_TEST_TMPDIR/v$v.json"
        echo "$v: $output"
        [ "$status" -eq 0 ]
        case $v in
        2) [ "$(rows)" = "running 2 - running,pending 1" ] ;;
        3) [ "$(rows)" = "running 3 - succeeded,pending 1" ] ;;
        4) [ "$(rows)" = "running 4 - succeeded,running 2" ] ;;
        5) [ "$(rows)" = "failed 5 - succeeded,failed 2" ] ;; # StepFailed fails the run at once
        6) [ "$(rows)" = "failed 6 boom succeeded,failed 2" ] ;;
        7) [[ "$output" == *"dead_letter e2e.projector_pg.run.events/0/6 pg run event refused by the run fold: "* ]]
           [ "$(rows)" = "failed 6 boom succeeded,failed 2" ] ;;
        esac
    done
    [ "$(kq_psql -c "SELECT version FROM aggregate_versions WHERE aggregate_type = 'run'")" = 6 ]
}

@test "a version gap is dead-lettered, not applied, and its offset still stored" {
    fresh gap
    run pgapply --offset 10 "$DATA/step_failed.json" "$DATA/run_failed.json" "$DATA/run_started.json"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "dead_letter e2e.projector_pg.run.events/0/10 pg version gap: version 4 of run/run-77: last applied version is 0" ]
    [ "${lines[1]}" = "dead_letter e2e.projector_pg.run.events/0/11 pg version gap: version 5 of run/run-77: last applied version is 0" ]
    [ "$(kq_psql -c "SELECT count(*) FROM events WHERE aggregate_id = 'run-77'")" = 0 ]
    [ "$(kq_psql -c "SELECT count(*) FROM aggregate_versions WHERE aggregate_id = 'run-77'")" = 0 ]
    [ "$(kq_psql -c "SELECT count(*) FROM events")" = 1 ]
    [ "$(kq_psql -c "SELECT next_offset FROM projection_offsets WHERE topic = 'e2e.projector_pg.run.events' AND partition = 0")" = 13 ]
}

@test "an event reusing another event's event_id is applied like the LMDB target does, not a stuck batch" {
    fresh dupid
    python3 - "$DATA/resource_created.json" "$DATA/workflow_created.json" >"$BATS_TEST_TMPDIR/wf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = json.load(open(sys.argv[2]))
w["event_id"] = r["event_id"]
print(json.dumps(w))
PY
    run pgapply "$DATA/resource_created.json" "$BATS_TEST_TMPDIR/wf.json"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *dead_letter* ]]
    [ "$(kq_psql -c 'SELECT count(*), count(DISTINCT event_id) FROM events')" = "2|1" ]
    [ "$(kq_psql -c 'SELECT count(*) FROM aggregate_versions')" = 2 ]
}

@test "a failing dead-letter callback rolls the whole batch back" {
    fresh dlfail
    run pgapply --dl-fail "$DATA/resource_created.json" "$DATA/step_failed.json"
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"dead_letter e2e.projector_pg.run.events/0/1"* ]]
    [[ "$output" == *"batch rolled back"* ]]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 0 ]
    [ "$(kq_psql -c 'SELECT count(*) FROM projection_offsets')" = 0 ]
    [ "$(kq_psql -c 'SELECT count(*) FROM resources')" = 0 ]
}

@test "an event with a NUL in a string is dead-lettered (jsonb cannot hold it); undecodable records are skipped" {
    fresh nul
    printf 'not an envelope' >"$BATS_TEST_TMPDIR/bad.kqev"
    run pgapply "$DATA/edge_unicode.json" "$BATS_TEST_TMPDIR/bad.kqev" "$DATA/resource_created.json"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "undecodable $BATS_TEST_TMPDIR/bad.kqev: "* ]]
    [ "${lines[1]}" = "dead_letter e2e.projector_pg.workflow.events/0/0 pg a stored string contains a NUL character, which PostgreSQL text/jsonb cannot hold" ]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 1 ]
    [ "$(kq_psql -c "SELECT next_offset FROM projection_offsets WHERE topic = 'e2e.projector_pg.resource.events'")" = 3 ]
}

@test "offsets are stored with the batch; re-applying a batch applies nothing twice" {
    fresh reapply
    run_variants
    mapfile -t fs < <(files resource_created resource_updated workflow_created run_started step_attempted)
    pgapply --batch 2 "${fs[@]}"
    run pgapply --offsets
    echo "$output"
    [ "${lines[0]}" = "e2e.projector_pg.resource.events 0 2" ]
    [ "${lines[1]}" = "e2e.projector_pg.run.events 0 5" ]
    [ "${lines[2]}" = "e2e.projector_pg.workflow.events 0 3" ]
    snapshot() { kq_psql -c "SELECT count(*), string_agg(topic || '/' || \"offset\" || '/' || version, ',' ORDER BY topic, \"offset\") FROM events" -c "SELECT string_agg(aggregate_id || '=' || version, ',' ORDER BY aggregate_id) FROM aggregate_versions" -c "SELECT name, status, version FROM resources"; }
    before=$(snapshot)
    # offsets lost: the same records again (same origins) are recognised and skipped
    kq_psql -c "DELETE FROM projection_offsets"
    run pgapply "${fs[@]}"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *dead_letter* ]]
    [ "$(snapshot)" = "$before" ]
    [ "$(pgapply --offsets | head -1)" = "e2e.projector_pg.resource.events 0 2" ]
    # the same events at other offsets (a duplicate in the log) are dead-lettered as stale
    run pgapply --offset 100 "$DATA/resource_updated.json"
    echo "$output"
    [ "${lines[0]}" = "dead_letter e2e.projector_pg.resource.events/0/100 pg stale or duplicate event: version 2 of resource/res-42: last applied version is 2" ]
    [ "$(snapshot)" = "$before" ]
}

@test "from Kafka: what kcqrs-commands wrote is applied once; a second run applies nothing" {
    fresh kafka
    cmd_make_keys
    cmd_start main
    req POST /api/v1/resources '{"id":"k1","name":"one"}'
    [ "$CODE" = 201 ]
    req POST /api/v1/resources '{"id":"k2","name":"two","description":"d2","status":"inactive"}'
    [ "$CODE" = 201 ]
    req POST /api/v1/resources '{"id":"k3","name":"three"}'
    [ "$CODE" = 201 ]
    req PUT /api/v1/resources/k1 '{"name":"one b","description":"","status":"archived"}'
    [ "$CODE" = 200 ]
    req DELETE /api/v1/resources/k3
    [ "$CODE" = 200 ]
    run pgapply --from-kafka
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == "applied 5 events in "* ]]
    run kq_psql -c "SELECT id, name, description, status, version FROM resources ORDER BY id"
    echo "$output"
    [ "${lines[0]}" = "k1|one b||archived|2" ]
    [ "${lines[1]}" = "k2|two|d2|inactive|1" ]
    [ "${#lines[@]}" = 2 ]
    [ "$(kq_psql -c "SELECT string_agg(aggregate_id || '=' || version, ',' ORDER BY aggregate_id) FROM aggregate_versions")" = "k1=2,k2=1,k3=2" ]
    [ "$(kq_psql -c "SELECT count(*) FROM events WHERE topic = 'e2e.projector_pg.resource.events'")" = 5 ]
    # every stored offset is one past the last record applied from its partition
    [ "$(kq_psql -c "SELECT count(*) FROM projection_offsets o WHERE next_offset <> (SELECT max(\"offset\") + 1 FROM events e WHERE e.topic = o.topic AND e.partition = o.partition)")" = 0 ]
    run pgapply --from-kafka
    echo "$output"
    [ "$output" = "applied 0 events in 0 batches" ]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 5 ]
}

@test "a crash at a PostgreSQL failpoint leaves all or nothing of the batch; a restart completes it once" {
    mapfile -t fs < <(files resource_created resource_updated workflow_created run_started)
    for fp in pg_after_insert pg_before_commit pg_after_commit; do
        fresh "crash_$fp"
        pgapply --migrate
        run env KCQRS_FAILPOINT="$fp" KCQRS_LOG_LEVEL=warn "$KCQRS_TOOLS/kq_pgapply" "${fs[@]}"
        echo "$fp: status $status: $output"
        [ "$status" -eq 137 ] # SIGKILL
        if [ "$fp" = pg_after_commit ]; then want=4; else want=0; fi
        [ "$(kq_psql -c 'SELECT count(*) FROM events')" = "$want" ]
        [ "$(kq_psql -c 'SELECT count(*) FROM resources')" = "$((want / 4))" ]
        [ "$(kq_psql -c 'SELECT count(*) FROM projection_offsets')" = "$((want ? 3 : 0))" ]
        # the restart (same records, same origins) ends in the same state either way
        run pgapply "${fs[@]}"
        echo "$output"
        [ "$status" -eq 0 ]
        [[ "$output" != *dead_letter* ]]
        [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 4 ]
        [ "$(kq_psql -c "SELECT name, version FROM resources")" = "Build server (old)|2" ]
        [ "$(kq_psql -c "SELECT string_agg(aggregate_id || '=' || version, ',' ORDER BY aggregate_id) FROM aggregate_versions")" = "3b241101-e2bb-4255-8caf-4136c566a962=1,res-42=2,wf.deploy_notify-1=1" ]
    done
}

# ------------------------------------------------------------------ active / standby
# pgp_start NAME: a kcqrs-projector --target pg on a free admin port (pid in
# NAME.pid, URL in NAME.url, log NAME.log of this test's directory).
pgp_start() {
    local port
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_TEST_TMPDIR/$1.url"
    KCQRS_PROJECTOR_ADDR="127.0.0.1:$port" KCQRS_LMDB_DIR="$BATS_TEST_TMPDIR/lmdb-$1" \
        KCQRS_LOG_LEVEL=info kq_bg "$BATS_TEST_TMPDIR/$1.log" \
        "$KCQRS_BIN/kcqrs-projector" --target pg >"$BATS_TEST_TMPDIR/$1.pid"
    kq_wait_http "$(cat "$BATS_TEST_TMPDIR/$1.url")/health" 30
}
# pgp_metric NAME SAMPLE: one sample of NAME's /metrics ("" when absent).
pgp_metric() {
    curl -fsS --max-time 5 "$(cat "$BATS_TEST_TMPDIR/$1.url")/metrics" |
        awk -v n="$2" '$1 == n { print $2; exit }'
}
# pgp_role NAME: "active" (target open), "standby" or "other".
pgp_role() {
    local sb con
    sb=$(pgp_metric "$1" 'kcqrs_projector_standby{target="pg"}')
    con=$(pgp_metric "$1" 'kcqrs_projector_connected{target="pg"}')
    if [[ "$sb" == 1 ]]; then echo standby; elif [[ "$con" == 1 ]]; then echo active; else echo other; fi
}
pgp_is() { [[ "$(pgp_role "$1")" == "$2" ]]; }
pgp_caught_up() { [[ "$(pgp_lag "$1")" == 0 ]]; }
# pgp_lag NAME: the sum of NAME's pg lag samples.
pgp_lag() {
    curl -fsS --max-time 5 "$(cat "$BATS_TEST_TMPDIR/$1.url")/metrics" |
        awk '$1 ~ /^kcqrs_projector_lag\{target="pg"/ { s += $2; n++ } END { if (n == 0) exit 1; print s }'
}

@test "active/standby: a second projector stands by; kill -9 of the active one under load, the standby takes over within seconds; PostgreSQL equals the log" {
    fresh standby
    export KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX.standby" KCQRS_PARTITIONS=3
    pgp_start a
    kq_wait_for 30 pgp_is a active
    pgp_start b
    kq_wait_for 30 pgp_is b standby
    # a standby is ready (it does what it should) and reports no lag of its own
    curl -fsS --max-time 5 "$(cat "$BATS_TEST_TMPDIR/b.url")/ready"
    ! pgp_lag b || false
    # (the gauge is set just before the line is logged: wait for the line)
    kq_wait_for 10 grep -q 'another projector is the active one of schema kcqrs (standby)' "$BATS_TEST_TMPDIR/b.log"
    # the standby waits on the lock inside PostgreSQL (granted the moment it is freed),
    # it does not poll with a new connection
    kq_wait_for 10 bash -c "[[ \$(psql -X -At -d '$KCQRS_PG_DSN' -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted\") -ge 1 ]]"

    load=$(kq_bg "$BATS_TEST_TMPDIR/load.log" "$KCQRS_TOOLS/kq_produce_raw" load 2000 --ids 300 \
        --txn 20 --pause-ms 40 --prefix sb)
    kq_wait_for 60 bash -c "[[ \$(psql -X -At -d '$KCQRS_PG_DSN' -c 'SELECT count(*) FROM kcqrs.events') -ge 300 ]]"
    ! kq_gone "$load" || false # still loading when the active one dies
    kill -KILL "$(cat "$BATS_TEST_TMPDIR/a.pid")"
    t0=$(date +%s%N)
    kq_wait_for 20 pgp_is b active
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "takeover: ${ms} ms after kill -9" >&3
    echo "takeover: ${ms} ms"
    [ "$ms" -lt 10000 ]
    # the role flips before the log line is flushed (logs are buffered): wait for it
    kq_wait_for 10 grep -q 'pg: took over as the active target' "$BATS_TEST_TMPDIR/b.log"
    before=$(kq_psql -c 'SELECT count(*) FROM events')

    kq_wait_for 120 kq_gone "$load"
    cat "$BATS_TEST_TMPDIR/load.log"
    grep -q 'produced 2000 events' "$BATS_TEST_TMPDIR/load.log"
    kq_wait_for 60 pgp_caught_up b
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" -gt "$before" ]
    kq_stop "$(cat "$BATS_TEST_TMPDIR/b.pid")" 20
    # under KCQRS_BIN=build/san-address-undefined/bin: no ASan/LSan/UBSan report
    ! grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$BATS_TEST_TMPDIR/a.log" "$BATS_TEST_TMPDIR/b.log" || false
    run kq_tool kq_rmcheck --no-lmdb --pg "$KCQRS_PG_DSN"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"records 2000 valid 2000 refused 0 "* ]]
    [[ "$output" == *"pg: equal"* ]]
    [ "$(kq_psql -c 'SELECT count(*) FROM events')" = 2000 ]
}
