#!/usr/bin/env bats
# stream.bats — GET /api/v1/events/stream of kcqrs-query against the real
# chain (kcqrs-commands -> Kafka -> kcqrs-projector -> PostgreSQL for the audit
# API): 20,000 events streamed equal the log as the audit API shows it, a
# resume at a random cut loses and repeats nothing, NDJSON and filters, from
# now and from a consistency token, heartbeats, 50 concurrent streams, the
# stream limit, a consumer that does not read is cut with a last message, bad
# parameters are 400. The client is tests/e2e/stream_client.py (raw HTTP/1.1).

load helpers
load commands_helpers

SC="$BATS_TEST_DIRNAME/stream_client.py"
N_LOG=20000

svc_stop() { [[ -f "$BATS_FILE_TMPDIR/$1.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/$1.pid")" 10; rm -f "$BATS_FILE_TMPDIR/$1.pid"; }

# qry_start NAME [ENV=VALUE...]: a kcqrs-query on a free port.
qry_start() {
    local name="$1" port
    shift
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/$name.url"
    env KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        KCQRS_STREAM_HEARTBEAT_MS=300 KCQRS_STREAM_BUFFER_KB=64 KCQRS_STREAM_STALL_MS=2000 "$@" \
        bash -c 'exec "$0" >"$1" 2>&1 3>&- </dev/null' "$KCQRS_BIN/kcqrs-query" \
        "$BATS_FILE_TMPDIR/$name.log" &
    echo $! >"$BATS_FILE_TMPDIR/$name.pid"
    kq_wait_port "$port" 30
}
qry_url() { cat "$BATS_FILE_TMPDIR/$1.url"; }

setup_file() {
    kq_fresh_db stream
    cmd_make_keys
    cmd_start cmd
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_PROJECTOR_ADDR="127.0.0.1:$(kq_free_port)" \
        kq_bg "$BATS_FILE_TMPDIR/proj.log" "$KCQRS_BIN/kcqrs-projector" >"$BATS_FILE_TMPDIR/proj.pid"
    qry_start q KCQRS_STREAM_MAX=60
    kq_wait_for 60 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$(qry_url q)/ready') == 200 ]]"
    # the log every test reads: N_LOG valid events (resources created, updated, deleted;
    # workflows created, disabled, enabled) in transactions, as kcqrs-commands writes them
    kq_tool kq_produce_raw load "$N_LOG" --ids 2000 --prefix base >&3
}

setup() { cmd_use cmd; }

teardown_file() {
    local n rc=0
    for n in q q2; do svc_stop "$n"; done
    svc_stop proj
    cmd_stop_all || rc=1
    for n in q q2; do
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
            "$BATS_FILE_TMPDIR/$n.log" 2>/dev/null; then
            echo "kcqrs-query $n: sanitizer report:" >&2
            cat "$BATS_FILE_TMPDIR/$n.log" >&2
            rc=1
        fi
    done
    return $rc
}

@test "stream: 20,000 events from the beginning equal the log; a resume at a random cut loses and repeats nothing" {
    local d="$BATS_TEST_TMPDIR" cut
    # the projector has applied everything: the audit API shows N_LOG events
    kq_wait_for 120 bash -c "[[ \$(python3 '$SC' audit '$(qry_url q)' '$KQ_KEY_ADMIN' --out '$d/audit.json') -ge $N_LOG ]]"
    run python3 "$SC" audit "$(qry_url q)" "$KQ_KEY_ADMIN" --out "$d/audit.json"
    [[ "$output" == "$N_LOG" ]] || kq_fail "audit API holds $output events, expected $N_LOG"
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" "$N_LOG" --query from=beginning \
        --timeout 120 >"$d/all.jsonl"
    cut=$((RANDOM % (N_LOG - 2) + 1))
    python3 - "$d/all.jsonl" "$cut" >"$d/cut.id" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
print(json.loads(lines[int(sys.argv[2]) - 1])["id"])
PY
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" "$((N_LOG - cut))" \
        --last-event-id "$(cat "$d/cut.id")" --timeout 120 >"$d/rest.jsonl"
    python3 - "$d/audit.json" "$d/all.jsonl" "$d/rest.jsonl" "$cut" <<'PY'
import json, sys
audit = {e["event_id"]: e for e in json.load(open(sys.argv[1]))}
streamed = [json.loads(l) for l in open(sys.argv[2])]
rest = [json.loads(l) for l in open(sys.argv[3])]
cut = int(sys.argv[4])
evs = [s["event"] for s in streamed]
ids = [e["event_id"] for e in evs]
assert len(ids) == len(set(ids)), "duplicates in the stream"
assert set(ids) == set(audit), "stream and audit differ: %d vs %d" % (len(ids), len(audit))
for e in evs:
    assert e == audit[e["event_id"]], "event differs from the audit API: %s vs %s" % (e, audit[e["event_id"]])
seen = {}
for e in evs:  # per aggregate, versions in order
    assert seen.get(e["aggregate_id"], 0) < e["version"], "version order broken"
    seen[e["aggregate_id"]] = e["version"]
head = set(ids[:cut])
tail = [s["event"]["event_id"] for s in rest]
assert len(tail) == len(set(tail)), "the resumed stream repeats itself"
assert not head & set(tail), "the resume repeats %d events" % len(head & set(tail))
assert head | set(tail) == set(audit), "the resume lost %d events" % len(set(audit) - head - set(tail))
print("ok", len(ids), "events, cut at", cut)
PY
}

@test "stream: NDJSON with filters; from now; from a consistency token; heartbeats" {
    local d="$BATS_TEST_TMPDIR" id="f-$RANDOM$RANDOM" tok
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"a\"}"
    [[ "$CODE" == 201 ]]
    tok=$(jf 'd["consistency_token"]')
    req PUT "/api/v1/resources/$id" '{"name":"b"}'
    [[ "$CODE" == 200 ]]
    req PUT "/api/v1/resources/$id" '{"name":"c"}'
    [[ "$CODE" == 200 ]]
    # filters: aggregate_id + event_type, NDJSON with the position in each line
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" 2 --ndjson --timeout 30 \
        --query "from=beginning&aggregate_type=resource&aggregate_id=$id&event_type=ResourceUpdated" \
        >"$d/f.jsonl"
    python3 - "$d/f.jsonl" "$id" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert [e["event"]["event_type"] for e in ev] == ["ResourceUpdated"] * 2, ev
assert [e["event"]["version"] for e in ev] == [2, 3], ev
assert all(e["event"]["aggregate_id"] == sys.argv[2] and e["id"] for e in ev), ev
PY
    # ?after= resumes like Last-Event-ID: after the first of the two, only the second
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" 1 --ndjson --timeout 30 \
        --query "after=$(head -1 "$d/f.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')&aggregate_id=$id&event_type=ResourceUpdated" \
        >"$d/after.jsonl"
    python3 -c 'import json,sys; ev=[json.loads(l)["event"] for l in open(sys.argv[1])]; assert [e["version"] for e in ev]==[3], ev' "$d/after.jsonl"
    # nothing else matches: only heartbeats arrive (": hb" every 300 ms here)
    run python3 "$SC" raw "$(qry_url q)" "$KQ_KEY_READER" --timeout 2 \
        --query "from=beginning&aggregate_id=$id&event_type=ResourceDeleted"
    [[ "$output" == *"HTTP/1.1 200"* && "$output" == *"text/event-stream"* ]]
    [[ "$output" == *": hb"* && "$output" != *"data:"* ]] || kq_fail "expected heartbeats only: $output"
    # from a consistency token: the first event of its partition is that event
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" 3 --timeout 30 \
        --query "from=$tok&aggregate_id=$id" >"$d/t.jsonl"
    python3 -c 'import json,sys; ev=[json.loads(l)["event"] for l in open(sys.argv[1])]; assert [e["version"] for e in ev]==[1,2,3], ev' "$d/t.jsonl"
    # from now (the default): only what is written after the stream began
    python3 "$SC" collect "$(qry_url q)" "$KQ_KEY_READER" 1 --timeout 30 \
        --query "aggregate_id=$id" --ready-file "$d/ready" >"$d/now.jsonl" &
    local pid=$!
    kq_wait_for 30 test -f "$d/ready"
    req DELETE "/api/v1/resources/$id"
    [[ "$CODE" == 200 ]]
    wait $pid
    python3 -c 'import json,sys; ev=[json.loads(l)["event"] for l in open(sys.argv[1])]; assert [(e["event_type"], e["version"]) for e in ev]==[("ResourceDeleted",4)], ev' "$d/now.jsonl"
}

@test "stream: 50 concurrent streams get the same events" {
    run python3 "$SC" concurrent "$(qry_url q)" "$KQ_KEY_READER" 50 1000 --query from=beginning
    echo "$output"
    [[ "$status" -eq 0 ]]
}

@test "stream: a consumer that does not read is cut with a last error message" {
    # it starts reading 1 s after the cut: the last message is still there (2 s of grace)
    run python3 "$SC" slow "$(qry_url q)" "$KQ_KEY_READER" --query from=beginning --wait 30 \
        --read-after 1
    echo "$output"
    [[ "$status" -eq 0 ]]
    python3 -c 'import json,sys
d = json.loads(sys.argv[1])
assert d["last_kind"] == "error" and d["last"]["code"] == "slow_consumer", d
assert d["last"]["resume_from"], d
assert 0 < d["events"] < 20000, d' "$output"
    run curl -s "$(qry_url q)/metrics"
    [[ "$output" =~ kcqrs_query_stream_slow_consumers_total\ [1-9] ]]
}

@test "stream: at most KCQRS_STREAM_MAX streams; the rest 503" {
    qry_start q2 KCQRS_STREAM_MAX=2
    local u
    u=$(qry_url q2)
    python3 "$SC" collect "$u" "$KQ_KEY_READER" 1 --timeout 8 >/dev/null 2>&1 &
    python3 "$SC" collect "$u" "$KQ_KEY_READER" 1 --timeout 8 >/dev/null 2>&1 &
    kq_wait_for 20 bash -c "curl -s '$u/metrics' | grep -q '^kcqrs_query_streams_active 2'"
    CMD_URL="$u" REQ_KEY="$KQ_KEY_READER" req GET /api/v1/events/stream
    assert_error 503
    assert_retry_after
    svc_stop q2
}

@test "stream: bad parameters are 400, a missing key 401, a writer key 403" {
    local u q
    u=$(qry_url q)
    for q in "from=yesterday:from" "after=%21%21:after" "aggregate_type=thing:aggregate_type" \
        "aggregate_id=a%20b:aggregate_id" "event_type=Nope:event_type" \
        "event_type=ResourceCreated,:event_type" "colour=red:colour" \
        "from=now&after=AQAAAA:after" "after=AQEAAAAA:after" "from=beginning&from=now:from"; do
        CMD_URL="$u" REQ_KEY="$KQ_KEY_READER" req GET "/api/v1/events/stream?${q%:*}"
        assert_error 400 "${q##*:}"
    done
    # a position naming 100 partitions of the resource topic
    local big
    big=$(python3 -c 'import base64; print(base64.urlsafe_b64encode(bytes([1, 100] + [0]*100 + [0, 0])).decode().rstrip("="))')
    CMD_URL="$u" REQ_KEY="$KQ_KEY_READER" req GET /api/v1/events/stream "" -H "Last-Event-ID: $big"
    assert_error 400 Last-Event-ID
    CMD_URL="$u" REQ_KEY="$KQ_KEY_READER" req GET /api/v1/events/stream "" -H "Last-Event-ID: x"
    assert_error 400 Last-Event-ID
    CMD_URL="$u" REQ_KEY="" req GET /api/v1/events/stream
    assert_error 401
    CMD_URL="$u" REQ_KEY="$KQ_KEY_WRITER" req GET /api/v1/events/stream
    assert_error 403
}
