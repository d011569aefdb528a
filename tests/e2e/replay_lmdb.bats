#!/usr/bin/env bats
# replay_lmdb.bats — kcqrs-replay on the LMDB read model, end to end:
# a rebuild from nothing equals the log (kq_rmcheck), a rebuild while the
# projector, the query API and a command load run switches the model under
# them without a failed read or a lost event, verify finds a key deleted
# behind the projector's back, --until TIME / --until-offsets build named
# snapshots holding exactly the state at the bound, a second rebuild is
# refused as busy, SIGTERM drops the shadow.

load helpers
load commands_helpers
load projector_helpers
load replay_helpers

setup_file() {
    kq_fresh_db replay_lmdb
    cmd_make_keys
    cmd_start main
    proj_init
}

teardown_file() {
    local rc=0
    qry_stop || true
    proj_stop || true
    cmd_stop_all || rc=1
    proj_no_sanitizer_report || rc=1
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$BATS_FILE_TMPDIR/replay.log" 2>/dev/null; then
        echo "kcqrs-replay: sanitizer report" >&2
        rc=1
    fi
    return "$rc"
}

setup() {
    cmd_use main
    proj_init
}

teardown() {
    if [[ -z "${BATS_TEST_COMPLETED:-}" ]]; then
        proj_dump_log
        tail -n 40 "$BATS_FILE_TMPDIR/replay.log" >&2
        [[ -f "$BATS_TEST_TMPDIR/ledger" ]] && load_stop "$BATS_TEST_TMPDIR/ledger"
        qry_stop || true
        proj_stop || true
    fi
    return 0
}

# some_history N: N resources, every third updated, every fifth deleted.
some_history() {
    local i id
    for i in $(seq 1 "$1"); do
        id="h-$BATS_TEST_NUMBER-$i-$RANDOM"
        create_resource "$id" "item $i" || return 1
        if ((i % 3 == 0)); then
            req PUT "/api/v1/resources/$id" '{"status":"inactive","name":"renamed"}' -H 'If-Match: "1"'
            [[ "$CODE" == 200 ]] || return 1
        fi
        if ((i % 5 == 0)); then
            req DELETE "/api/v1/resources/$id" - -H "If-Match: \"$((i % 3 == 0 ? 2 : 1))\""
            [[ "$CODE" == 200 || "$CODE" == 204 ]] || kq_fail "delete $id: $CODE $BODY" || return 1
        fi
    done
}

@test "usage errors exit 2 with a clear message" {
    replay rebuild
    [ "$RP_STATUS" -eq 2 ]
    [[ "$RP_ERR" == *"--target"* ]]
    replay rebuild --target lmdb --until yesterday
    [ "$RP_STATUS" -eq 2 ]
    [[ "$RP_ERR" == *"bad TIME 'yesterday'"* ]]
    replay rebuild --target lmdb --until-offsets "nosuch:0=1"
    [ "$RP_STATUS" -eq 2 ]
    [[ "$RP_ERR" == *"not an event topic"* ]]
    replay rebuild --target lmdb --until @1 --name Bad-Name
    [ "$RP_STATUS" -eq 2 ]
    replay drop-snapshot --target lmdb --name nothing_here
    [ "$RP_STATUS" -eq 2 ]
    [[ "$RP_ERR" == *"no LMDB snapshot"* ]]
}

@test "rebuild with the projector stopped: the rebuilt model equals the log" {
    some_history 30
    proj_catch_up lmdb
    run rmcheck
    [ "$status" -eq 0 ]
    rm -rf "$(live_dir)"
    replay rebuild --target lmdb
    [ "$RP_STATUS" -eq 0 ]
    [[ "$RP_OUT" == *"lmdb: rebuilt and switched live"* ]]
    [ -f "$(live_dir)/data.mdb" ]
    [ ! -e "$PROJ_LMDB/readmodel.shadow" ]
    run rmcheck
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"lmdb: equal"* ]]
    # a second rebuild keeps the first as readmodel.retired
    replay rebuild --target lmdb --json
    [ "$RP_STATUS" -eq 0 ]
    [ -f "$PROJ_LMDB/readmodel.retired/data.mdb" ]
    tail -n 1 <<<"$RP_OUT" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["result"] == "ok" and r["exit"] == 0, r
t = r["targets"][0]
assert t["target"] == "lmdb" and t["events"] > 30 and "bulk" in t["durations"], t'
    run rmcheck
    [ "$status" -eq 0 ]
}

@test "verify: equal exits 0; a key deleted behind the projector's back exits 1 naming it" {
    replay verify --target lmdb
    [ "$RP_STATUS" -eq 0 ]
    [[ "$RP_OUT" == *"lmdb: equal to the log"* ]]
    victim=$(rmtool dump "$(live_dir)" | head -n 1 | cut -d' ' -f1)
    [ -n "$victim" ]
    rmtool del "$(live_dir)" resources "$victim"
    replay verify --target lmdb
    [ "$RP_STATUS" -eq 1 ]
    [[ "$RP_OUT" == *"resources \"$victim\": missing in live"* ]]
    [ ! -e "$PROJ_LMDB/readmodel.shadow" ]
    # repair for the next tests
    replay rebuild --target lmdb
    [ "$RP_STATUS" -eq 0 ]
    replay verify --target lmdb
    [ "$RP_STATUS" -eq 0 ]
}

@test "a second rebuild while one holds the lock exits 3 with a clear busy error" {
    # another process holds the rebuild lock (as a running rebuild does)
    python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(30)' "$PROJ_LMDB/readmodel.rebuild.lock" 3>&- &
    holder=$!
    kq_wait_for 10 bash -c "! flock -n '$PROJ_LMDB/readmodel.rebuild.lock' true"
    replay rebuild --target lmdb
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    [ "$RP_STATUS" -eq 3 ]
    [[ "$RP_ERR" == *"busy: another kcqrs-replay rebuild or verify holds"* ]]
    replay verify --target lmdb
    [ "$RP_STATUS" -eq 0 ]
}

@test "--until TIME builds a named snapshot with exactly the state at TIME" {
    a="u-a-$RANDOM"
    b="u-b-$RANDOM"
    create_resource "$a" "a before"
    create_resource "$b" "b before"
    sleep 0.2
    t=$(date +%s%6N)
    sleep 0.2
    req PUT "/api/v1/resources/$a" '{"name":"a after"}' -H 'If-Match: "1"'
    [ "$CODE" = 200 ]
    req DELETE "/api/v1/resources/$b" - -H 'If-Match: "1"'
    c="u-c-$RANDOM"
    create_resource "$c" "c after"
    replay rebuild --target lmdb --until "@$t" --name at_t
    [ "$RP_STATUS" -eq 0 ]
    [[ "$RP_OUT" == *"?snapshot=at_t"* ]]
    rmtool dump "$(snap_dir at_t)" >"$BATS_TEST_TMPDIR/snap"
    grep -qx "$a active 1 a before" "$BATS_TEST_TMPDIR/snap"
    grep -qx "$b active 1 b before" "$BATS_TEST_TMPDIR/snap"
    ! grep -q "^$c " "$BATS_TEST_TMPDIR/snap" || false
    fold_until "$t" >"$BATS_TEST_TMPDIR/expected"
    diff "$BATS_TEST_TMPDIR/expected" "$BATS_TEST_TMPDIR/snap"
    # RFC 3339 spelling of the same bound, default name
    iso=$(python3 -c "import datetime,sys; print(datetime.datetime.fromtimestamp($t/1e6, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ'))")
    replay rebuild --target lmdb --until "$iso"
    [ "$RP_STATUS" -eq 0 ]
    name=$(python3 -c "import datetime; print(datetime.datetime.fromtimestamp($t//1000000, datetime.timezone.utc).strftime('until_%Y%m%dt%H%M%S'))")
    rmtool dump "$(snap_dir "$name")" | diff "$BATS_TEST_TMPDIR/expected" -
    # the live model was not touched, and the snapshot can be dropped
    run rmcheck
    [ "$status" -eq 0 ] || proj_catch_up lmdb
    replay drop-snapshot --target lmdb --name "$name"
    [ "$RP_STATUS" -eq 0 ]
    [ ! -e "$(snap_dir "$name")" ]
}

@test "--until-offsets SPEC: a snapshot up to the given offsets only" {
    topic="$KCQRS_TOPIC_PREFIX.resource.events"
    spec=$(kq_tool kq_offsets ends "$topic" | awk -v t="$topic" '{ printf "%s%s:%s=%s", sep, t, $1, $2; sep="," }')
    # a partition that holds events (which partitions do depends on the random ids)
    busy=$(kq_tool kq_offsets ends "$topic" | awk '$2 > 0 { print $1; exit }')
    [ -n "$busy" ]
    late="late-$RANDOM"
    create_resource "$late" "after the spec"
    replay rebuild --target lmdb --until-offsets "$spec" --name by_offsets
    [ "$RP_STATUS" -eq 0 ]
    ! rmtool dump "$(snap_dir by_offsets)" | grep -q "^$late " || false
    rmtool offsets "$(snap_dir by_offsets)" | grep -q "^$topic/$busy "
    # an offset past the end fails the run
    replay rebuild --target lmdb --until-offsets "$topic:0=999999999" --name too_far
    [ "$RP_STATUS" -eq 3 ]
    [[ "$RP_ERR" == *"past its end"* ]]
}

@test "rebuild while the projector, the query API and a command load run" {
    proj_start --target lmdb
    proj_wait_ready 60
    qry_start
    # ids that exist before the rebuild: they must answer 200 throughout
    ids=()
    for i in $(seq 1 10); do
        id="live-$i-$RANDOM"
        create_resource "$id" "live $i"
        ids+=("$id")
    done
    kq_wait_for 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $KQ_KEY_READER' '$(qry_url)/api/v1/resources/${ids[9]}') == 200 ]]"
    load_start "$CMD_URL" "$BATS_TEST_TMPDIR/ledger" 3
    hid="hammer-$RANDOM"
    create_resource "$hid" hammered
    kq_bg "$BATS_TEST_TMPDIR/hammer.log" "$KCQRS_TOOLS/kq_hammer" --url "$CMD_URL" \
        --key "$KQ_KEY_WRITER" --id "$hid" --clients 2 --until 150 --timeout 60 >"$BATS_TEST_TMPDIR/hammer.pid"
    # the reader loop
    (
        while [[ ! -e "$BATS_TEST_TMPDIR/reads.stop" ]]; do
            for id in "${ids[@]}"; do
                echo "$id $(qry_code "$id")"
            done
        done
    ) >"$BATS_TEST_TMPDIR/reads" 2>&1 3>&- &
    reader=$!
    sleep 1
    replay rebuild --target lmdb
    [ "$RP_STATUS" -eq 0 ]
    sleep 1
    touch "$BATS_TEST_TMPDIR/reads.stop"
    wait "$reader"
    load_stop "$BATS_TEST_TMPDIR/ledger"
    kq_wait_for 90 kq_gone "$(cat "$BATS_TEST_TMPDIR/hammer.pid")"
    n=$(wc -l <"$BATS_TEST_TMPDIR/reads")
    bad=$(awk '$2 != 200' "$BATS_TEST_TMPDIR/reads" | wc -l)
    echo "reads=$n failed=$bad"
    awk '$2 != 200' "$BATS_TEST_TMPDIR/reads" | head
    [ "$n" -ge 20 ]
    [ "$bad" -eq 0 ]
    ledger_check "$BATS_TEST_TMPDIR/ledger"
    # the projector noticed the switch, reopened without an error, and
    # continues from the new model's offsets: everything arrives, nothing twice
    kq_wait_for 60 grep -q "live read model was replaced" "$BATS_FILE_TMPDIR/projector.cur.log"
    kq_wait_for 90 rmcheck --quiet
    [ "$(proj_metric 'kcqrs_projector_target_errors_total{target="lmdb"}')" = 0 ]
    [ "$(proj_metric 'kcqrs_projector_dead_letters_total{target="lmdb"}')" = 0 ]
    [ -f "$PROJ_LMDB/readmodel.retired/data.mdb" ]
    # the query API was not restarted: it took up the rebuilt model (qry_rm) and its
    # waiter now watches the new data.mdb, so a read carrying the token of a write
    # made after the switch is answered as soon as the projector applied it
    [[ $(curl -s "$(qry_url)/metrics" | awk '$1 == "kcqrs_query_readmodel_switches_total" { print $2 }') -ge 1 ]]
    post="post-$RANDOM"
    create_resource "$post" "after the switch"
    tok=$(jf 'd["consistency_token"]')
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $KQ_KEY_READER" \
        -H "X-Consistency-Token: $tok" "$(qry_url)/api/v1/resources/$post") == 200 ]]
    replay verify --target lmdb
    [ "$RP_STATUS" -eq 0 ]
    qry_stop
    proj_stop
}

@test "SIGTERM during a rebuild drops the shadow and exits 3; the live model is untouched" {
    kq_tool kq_produce_raw load 200000 --ids 5000 --prefix sig >/dev/null
    before=$(rmtool offsets "$(live_dir)" | md5sum)
    proj_init
    KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_REPLAY_BATCH_MAX=2000 \
        kq_bg "$BATS_TEST_TMPDIR/sig.log" "$KCQRS_BIN/kcqrs-replay" rebuild --target lmdb \
        >"$BATS_TEST_TMPDIR/sig.pid"
    pid=$(cat "$BATS_TEST_TMPDIR/sig.pid")
    kq_wait_for 60 test -f "$PROJ_LMDB/readmodel.shadow/data.mdb"
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    cat "$BATS_TEST_TMPDIR/sig.log" >>"$BATS_FILE_TMPDIR/replay.log"
    [ "$rc" -eq 3 ]
    [ ! -e "$PROJ_LMDB/readmodel.shadow" ]
    [ "$(rmtool offsets "$(live_dir)" | md5sum)" = "$before" ]
}

@test "--target all: both read models rebuilt at once, each switched, both verify equal" {
    some_history 10
    proj_catch_up all
    replay rebuild --target all --json
    [ "$RP_STATUS" -eq 0 ]
    tail -n 1 <<<"$RP_OUT" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["result"] == "ok", r
assert sorted(t["target"] for t in r["targets"]) == ["lmdb", "pg"], r
assert all(t["result"] == "ok" and "switch" in t["durations"] for t in r["targets"]), r'
    run rmcheck --pg "$KCQRS_PG_DSN"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"lmdb: equal"* && "$output" == *"pg: equal"* ]]
    replay verify --target all
    [ "$RP_STATUS" -eq 0 ]
    [[ "$RP_OUT" == *"lmdb: equal to the log"* && "$RP_OUT" == *"pg: equal to the log"* ]]
}
