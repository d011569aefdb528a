#!/usr/bin/env bats
# query.bats — kcqrs-query through the real chain: kcqrs-commands -> Kafka ->
# kcqrs-projector (LMDB and PostgreSQL) -> kcqrs-query. Every endpoint, its
# error paths, read-your-writes with consistency tokens, degradation when
# PostgreSQL or the LMDB read model is missing.

load helpers
load commands_helpers

# ------------------------------------------------------------------ processes

# svc_start NAME LOG CMD...: start a background process, remember its pid.
svc_start() {
    local name="$1" log="$2"
    shift 2
    kq_bg "$log" "$@" >"$BATS_FILE_TMPDIR/$name.pid"
}
svc_stop() { [[ -f "$BATS_FILE_TMPDIR/$1.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/$1.pid")" 10; rm -f "$BATS_FILE_TMPDIR/$1.pid"; }

proj_start() {
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_PROJECTOR_ADDR="127.0.0.1:$(kq_free_port)" \
        svc_start proj "$BATS_FILE_TMPDIR/proj.log.$(date +%s%N)" "$KCQRS_BIN/kcqrs-projector"
}

# qry_start NAME [ENV=VALUE...]: a kcqrs-query on a free port reading lmdb-read.
qry_start() {
    local name="$1" port
    shift
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/$name.url"
    env KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        KCQRS_QUERY_WAIT_MS=3000 "$@" \
        bash -c 'exec "$0" >"$1" 2>&1 3>&- </dev/null' "$KCQRS_BIN/kcqrs-query" \
        "$BATS_FILE_TMPDIR/$name.log" &
    echo $! >"$BATS_FILE_TMPDIR/$name.pid"
    kq_wait_port "$port" 30
}
qry_url() { cat "$BATS_FILE_TMPDIR/$1.url"; }

setup_file() {
    kq_fresh_db query
    cmd_make_keys
    export KQ_KEY_AUDITOR
    KQ_KEY_AUDITOR=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-auditor --roles auditor \
        --file "$KCQRS_KEYS_FILE")
    cmd_start cmd
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    proj_start
    qry_start q
    kq_wait_for 60 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$(qry_url q)/ready') == 200 ]]"
}

setup() { cmd_use cmd; }

teardown_file() {
    local n rc=0
    for n in q q2 q3 q4 q5 q6 qr; do svc_stop "$n"; done
    svc_stop proj
    svc_stop proj2
    cmd_stop_all || rc=1
    # with KCQRS_BIN pointing at a SANITIZE=address,undefined build
    for n in q q2 q3 q4 q5 q6 qr; do
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
            "$BATS_FILE_TMPDIR/$n.log" 2>/dev/null; then
            echo "kcqrs-query $n: sanitizer report:" >&2
            cat "$BATS_FILE_TMPDIR/$n.log" >&2
            rc=1
        fi
    done
    return $rc
}

# q PATH [CURL_ARGS...]: GET on the query API with $QKEY (reader unless set).
q() {
    local path="$1"
    shift
    local saved="$CMD_URL"
    CMD_URL="${QURL:-$(qry_url q)}"
    REQ_KEY="${QKEY-$KQ_KEY_READER}" req GET "$path" "" "$@"
    CMD_URL="$saved"
}

# q_until SECONDS STATUS PATH [CURL_ARGS...]: q until the answer has STATUS or SECONDS pass;
# CODE and BODY are the last answer's (the caller asserts on them). For a read of a write
# that a loaded machine's projector may apply later than one request's wait.
q_until() {
    local secs="$1" want="$2" deadline
    shift 2
    deadline=$(($(date +%s) + secs))
    while :; do
        q "$@"
        [[ "$CODE" == "$want" || $(date +%s) -ge $deadline ]] && return 0
        sleep 0.2
    done
}

# build_model DIR: a complete LMDB read model of the log as it is now in DIR/readmodel
# (kcqrs-projector --target lmdb --exit-at-end with KCQRS_LMDB_DIR=DIR).
build_model() {
    mkdir -p "$1"
    KCQRS_LMDB_DIR="$1" KCQRS_PROJECTOR_ADDR="127.0.0.1:0" timeout 120 \
        "$KCQRS_BIN/kcqrs-projector" --target lmdb --exit-at-end >>"$BATS_FILE_TMPDIR/build.log" 2>&1 3>&-
}

# exchange A B: swap two paths atomically, as kcqrs-replay does (renameat2 RENAME_EXCHANGE).
exchange() {
    python3 - "$1" "$2" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2) != 0:
    sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
PY
}

# events_schema: where the live PostgreSQL tables are (KCQRS_PG_SCHEMA once the
# projector uses it, public before).
events_schema() {
    kq_psql -c "SELECT table_schema FROM information_schema.tables WHERE table_name = 'events'
                AND table_schema IN ('kcqrs', 'public') ORDER BY table_schema = 'kcqrs' DESC LIMIT 1"
}

# get_loop URL PATH OUT: GET until OUT.stop exists, one "<status> <name>" line per answer.
get_loop() {
    local url="$1" path="$2" out="$3"
    while [[ ! -e "$out.stop" ]]; do
        curl -s --max-time 5 -H "Authorization: Bearer $KQ_KEY_READER" "$url$path" |
            python3 -c 'import json, sys
try:
    d = json.load(sys.stdin); print(200 if "name" in d else d["code"], d.get("name", "").replace(" ", "_"))
except Exception as e:
    print("bad", type(e).__name__)' >>"$out"
    done
}

# create ID [NAME [STATUS]]: POST on the command API; sets TOKEN.
create() {
    local body="{\"id\":\"$1\",\"name\":\"${2:-thing $1}\"${3:+,\"status\":\"$3\"}}"
    req POST /api/v1/resources "$body"
    [[ "$CODE" == 201 ]] || kq_fail "create $1: $CODE $BODY"
    TOKEN=$(jf 'd["consistency_token"]')
}

# ------------------------------------------------------------------ tests

@test "query: read by id with the token sees the write; ETag and 304; 404; bad id" {
    create q1-a "first" inactive
    q /api/v1/resources/q1-a -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    jcheck 'd["id"] == "q1-a" and d["name"] == "first" and d["status"] == "inactive" and d["version"] == 1 and d["description"] == ""'
    jcheck 'sorted(d) == ["created_at", "description", "id", "name", "status", "updated_at", "version"]'
    jcheck '__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", d["created_at"]) is not None'
    jcheck 'd["created_at"] == d["updated_at"]'
    [[ "$(hdr ETag)" == '"1"' ]]

    req PUT /api/v1/resources/q1-a '{"description":"changed"}'
    [[ "$CODE" == 200 ]]
    TOKEN=$(jf 'd["consistency_token"]')
    q "/api/v1/resources/q1-a?consistent_with=$TOKEN"
    [[ "$CODE" == 200 ]]
    jcheck 'd["version"] == 2 and d["description"] == "changed" and d["updated_at"] > d["created_at"]'
    [[ "$(hdr ETag)" == '"2"' ]]
    q /api/v1/resources/q1-a -H 'If-None-Match: "2"'
    [[ "$CODE" == 304 && -z "$BODY" && "$(hdr ETag)" == '"2"' ]]
    q /api/v1/resources/q1-a -H 'If-None-Match: "1"'
    [[ "$CODE" == 200 ]]

    q /api/v1/resources/q1-never
    assert_error 404
    req DELETE /api/v1/resources/q1-a
    TOKEN=$(jf 'd["consistency_token"]')
    q /api/v1/resources/q1-a -H "X-Consistency-Token: $TOKEN"
    assert_error 404
    q /api/v1/resources/bad%21id
    assert_error 400 id
}

# head_req URL PATH KEY: HEAD with curl --head; the status in HCODE, the head lower-cased in HEAD,
# the bytes after the head in HBODY_LEN (a HEAD answer has none).
head_req() {
    local out
    out=$(curl -sS --head --max-time 10 ${3:+-H "Authorization: Bearer $3"} "$1$2" -o - -w '\n%{http_code} %{size_download}')
    HCODE=$(tail -1 <<<"$out" | cut -d' ' -f1)
    HBODY_LEN=$(tail -1 <<<"$out" | cut -d' ' -f2)
    HEAD=$(sed '$d' <<<"$out" | tr -d '\r' | tr 'A-Z' 'a-z')
}

@test "query: HEAD answers like GET without a body on the query and command services; the stream's HEAD opens no stream" {
    create qh-a "head"
    q /api/v1/resources/qh-a -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    local len=${#BODY} u
    u=$(qry_url q)
    head_req "$u" /api/v1/resources/qh-a "$KQ_KEY_READER"
    [[ "$HCODE" == 200 && "$HBODY_LEN" == 0 ]] || kq_fail "HEAD resource: $HCODE, $HBODY_LEN body bytes"
    grep -qx 'etag: "1"' <<<"$HEAD"
    grep -qx "content-length: $len" <<<"$HEAD" || kq_fail "HEAD Content-Length is not the GET's $len: $HEAD"
    head_req "$u" /api/v1/resources/qh-a ""
    [[ "$HCODE" == 401 && "$HBODY_LEN" == 0 ]]
    head_req "$u" /api/v1/resources "$KQ_KEY_READER"
    [[ "$HCODE" == 200 ]]
    grep -q '^content-type: application/json' <<<"$HEAD"
    # the stream: the GET's head (200, text/event-stream), then the connection closes at once
    head_req "$u" /api/v1/events/stream "$KQ_KEY_READER"
    [[ "$HCODE" == 200 && "$HBODY_LEN" == 0 ]] || kq_fail "HEAD stream: $HCODE, $HBODY_LEN body bytes"
    grep -q '^content-type: text/event-stream' <<<"$HEAD"
    run curl -s "$u/metrics"
    [[ "$output" =~ kcqrs_query_streams_active\ 0 ]] || kq_fail "a HEAD left a stream open: $(grep streams_active <<<"$output")"
    for path in /health /ready /metrics /openapi.json; do
        head_req "$u" "$path" ""
        [[ "$HCODE" == 200 && "$HBODY_LEN" == 0 ]] || kq_fail "HEAD $path on kcqrs-query: $HCODE"
        head_req "$CMD_URL" "$path" ""
        [[ "$HCODE" == 200 && "$HBODY_LEN" == 0 ]] || kq_fail "HEAD $path on kcqrs-commands: $HCODE"
    done
    # a POST-only path: 405 naming POST only; a GET path's 405 names HEAD with GET
    head_req "$CMD_URL" /api/v1/resources "$KQ_KEY_WRITER"
    [[ "$HCODE" == 405 ]]
    grep -qx 'allow: post' <<<"$HEAD"
    req POST /health '{}'
    [[ "$CODE" == 405 && "$(hdr Allow)" == "GET, HEAD" ]]
}

@test "query: list pages cover every resource once, in id order; status filter" {
    local i ids=() st
    for i in $(seq -w 1 23); do
        st=active
        (( 10#$i % 3 == 0 )) && st=archived
        create "q2-$i" "n$i" "$st"
    done
    q "/api/v1/resources?limit=1&consistent_with=$TOKEN"
    [[ "$CODE" == 200 ]]
    python3 - "$(qry_url q)" "$KQ_KEY_READER" <<'PY'
import json, sys, urllib.request
base, key = sys.argv[1], sys.argv[2]
def walk(query, limit):
    out, cur, pages = [], None, 0
    while True:
        url = "%s/api/v1/resources?%slimit=%d" % (base, query, limit) + ("&cursor=" + cur if cur else "")
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key})
        d = json.load(urllib.request.urlopen(req))
        assert len(d["items"]) <= limit
        out += d["items"]; pages += 1
        cur = d["next_cursor"]
        if cur is None:
            return out, pages
        assert len(d["items"]) == limit
everything, _ = walk("", 1000)
ids = [x["id"] for x in everything]
assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
mine = [i for i in ids if i.startswith("q2-")]
assert mine == ["q2-%02d" % i for i in range(1, 24)], mine
for limit in (1, 4, 7):
    paged, pages = walk("", limit)
    assert [x["id"] for x in paged] == ids
    assert pages == (len(ids) + limit - 1) // limit or pages == len(ids) // limit + 1
for st in ("active", "archived", "inactive"):
    full = [x["id"] for x in everything if x["status"] == st]
    paged, _ = walk("status=%s&" % st, 5)
    assert [x["id"] for x in paged] == full, (st, paged)
    assert all(x["status"] == st for x in paged)
arch = [x["id"] for x in walk("status=archived&", 2)[0] if x["id"].startswith("q2-")]
assert arch == ["q2-%02d" % i for i in range(3, 24, 3)], arch
PY
}

@test "query: bad parameters answer 400 naming each parameter" {
    local tok_other
    q "/api/v1/resources?limit=0";        assert_error 400 limit
    q "/api/v1/resources?limit=1001";     assert_error 400 limit
    q "/api/v1/resources?limit=ten";      assert_error 400 limit
    q "/api/v1/resources?status=deleted"; assert_error 400 status
    q "/api/v1/resources?cursor=%25%25";  assert_error 400 cursor
    q "/api/v1/resources?cursor=AQ";      assert_error 400 cursor
    q "/api/v1/resources?status=active&limit=1"
    tok_other=$(jf 'd["next_cursor"]')
    q "/api/v1/resources?status=inactive&cursor=$tok_other"; assert_error 400 cursor
    q "/api/v1/resources?cursor=$tok_other";                  assert_error 400 cursor
    q "/api/v1/resources?limit=0&status=x"
    assert_error 400 limit
    jcheck 'len(d["errors"]) == 2'
    q "/api/v1/resources?consistent_with=v1.bm9wZQ";     assert_error 400 consistent_with
    q /api/v1/resources -H "X-Consistency-Token: junk"; assert_error 400 X-Consistency-Token
    q "/api/v1/resources/x/events?limit=2000";           assert_error 400 limit
    q "/api/v1/resources/x/events?cursor=abc";           assert_error 400 cursor
    QKEY=$KQ_KEY_AUDITOR
    q "/api/v1/audit?aggregate_type=thing";          assert_error 400 aggregate_type
    q "/api/v1/audit?event_type=ResourceBurned";     assert_error 400 event_type
    q "/api/v1/audit?since=2026-02-30T00:00:00Z";     assert_error 400 since
    q "/api/v1/audit?until=tomorrow";                assert_error 400 until
    q "/api/v1/audit?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"; assert_error 400 since
    q "/api/v1/audit?limit=0";                       assert_error 400 limit
    q "/api/v1/audit?cursor=AQ";                     assert_error 400 cursor
    q "/api/v1/audit?actor=no%20spaces";             assert_error 400 actor
    q "/api/v1/audit?aggregate_id=";                 assert_error 400 aggregate_id
    q "/api/v1/audit?aggregate_type=x&event_type=y&since=z&until=w&limit=-1"
    assert_error 400
    jcheck 'sorted(x["field"] for x in d["errors"]) == ["aggregate_type", "event_type", "limit", "since", "until"]'
}

@test "query: unknown or repeated query parameters answer 400" {
    q "/api/v1/resources?limt=5"
    assert_error 400 limt
    q "/api/v1/resources?limit=5&limit=6";            assert_error 400 limit
    q "/api/v1/resources/q1-a?verbose=1";             assert_error 400 verbose
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?actr=x&limit=5"
    assert_error 400 actr
    jcheck 'len(d["errors"]) == 1'
}

@test "query: roles — 401 without a key, 403 for the wrong role" {
    QKEY= q /api/v1/resources;                  assert_error 401
    QKEY=$KQ_KEY_WRITER q /api/v1/resources;    assert_error 403
    QKEY=$KQ_KEY_AUDITOR q /api/v1/resources;   assert_error 403
    q /api/v1/audit;                            assert_error 403
    QKEY=$KQ_KEY_AUDITOR q /api/v1/audit?limit=1
    [[ "$CODE" == 200 ]]
    QKEY=$KQ_KEY_ADMIN q /api/v1/audit?limit=1
    [[ "$CODE" == 200 ]]
    QKEY=$KQ_KEY_WRITER q /api/v1/status;       assert_error 403
}

@test "query: events of a resource from PostgreSQL, oldest first, with metadata; pages; 404" {
    create q5-a "five"
    local t1=$TOKEN
    req PUT /api/v1/resources/q5-a '{"name":"five b"}'
    req PUT /api/v1/resources/q5-a '{"status":"archived"}'
    req DELETE /api/v1/resources/q5-a
    TOKEN=$(jf 'd["consistency_token"]')
    q "/api/v1/resources/q5-a/events" -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    jcheck '[e["version"] for e in d["items"]] == [1, 2, 3, 4] and d["next_cursor"] is None'
    jcheck '[e["event_type"] for e in d["items"]] == ["ResourceCreated", "ResourceUpdated", "ResourceUpdated", "ResourceDeleted"]'
    jcheck 'all(e["aggregate_type"] == "resource" and e["aggregate_id"] == "q5-a" and e["actor"] == "e2e-writer" for e in d["items"])'
    jcheck 'all(k in e for e in d["items"] for k in ("event_id", "occurred_at", "command_id", "correlation_id", "causation_id", "payload", "topic", "partition", "offset"))'
    jcheck 'd["items"][0]["payload"]["name"] == "five" and d["items"][1]["payload"]["name"] == "five b"'
    jcheck 'all(a["occurred_at"] <= b["occurred_at"] for a, b in zip(d["items"], d["items"][1:]))'
    jcheck 'len({e["offset"] for e in d["items"]}) == 4 and len({e["partition"] for e in d["items"]}) == 1'
    q "/api/v1/resources/q5-a/events?limit=3"
    jcheck '[e["version"] for e in d["items"]] == [1, 2, 3] and d["next_cursor"]'
    q "/api/v1/resources/q5-a/events?limit=3&cursor=$(jf 'd["next_cursor"]')"
    jcheck '[e["version"] for e in d["items"]] == [4] and d["next_cursor"] is None'
    q "/api/v1/resources/q5-never/events"
    assert_error 404
}

@test "query: audit filters return exactly the expected events" {
    local since until id
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
    sleep 0.01
    REQ_KEY=$KQ_KEY_ADMIN create q6-adm1
    REQ_KEY=$KQ_KEY_ADMIN create q6-adm2
    create q6-w1
    req PUT /api/v1/resources/q6-w1 '{"name":"renamed"}'
    REQ_KEY=$KQ_KEY_ADMIN req DELETE /api/v1/resources/q6-adm2
    TOKEN=$(jf 'd["consistency_token"]')
    # the last write is on q6-adm2's partition: wait for the others through their own tokens
    sleep 0.01
    until=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
    create q6-late
    local late_tok=$TOKEN
    QKEY=$KQ_KEY_AUDITOR
    q "/api/v1/audit?consistent_with=$late_tok&since=$since&until=$until&limit=1000"
    [[ "$CODE" == 200 ]]
    jcheck '[(e["aggregate_id"], e["event_type"]) for e in d["items"]] == [("q6-adm1", "ResourceCreated"), ("q6-adm2", "ResourceCreated"), ("q6-w1", "ResourceCreated"), ("q6-w1", "ResourceUpdated"), ("q6-adm2", "ResourceDeleted")]'
    jcheck 'all(a["occurred_at"] <= b["occurred_at"] for a, b in zip(d["items"], d["items"][1:]))'
    q "/api/v1/audit?actor=e2e-admin&since=$since"
    jcheck '[(e["aggregate_id"], e["event_type"]) for e in d["items"]] == [("q6-adm1", "ResourceCreated"), ("q6-adm2", "ResourceCreated"), ("q6-adm2", "ResourceDeleted")]'
    q "/api/v1/audit?actor=e2e-writer&since=$since&event_type=ResourceCreated"
    jcheck '[e["aggregate_id"] for e in d["items"]] == ["q6-w1", "q6-late"]'
    q "/api/v1/audit?aggregate_type=resource&aggregate_id=q6-adm2"
    jcheck '[e["version"] for e in d["items"]] == [1, 2]'
    q "/api/v1/audit?aggregate_type=workflow&since=$since"
    jcheck 'd["items"] == [] and d["next_cursor"] is None'
    q "/api/v1/audit?until=$since&aggregate_id=q6-adm1"
    jcheck 'd["items"] == []'
    # offsets in since/until work too (the same instant written as +02:00)
    local plus2
    plus2=$(python3 -c 'import sys, datetime as D; t = D.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%fZ"); print((t + D.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "%2B02:00")' "$since")
    q "/api/v1/audit?actor=e2e-admin&since=$plus2"
    jcheck 'len(d["items"]) == 3'
    # pages of one event each give the same sequence
    python3 - "$(qry_url q)" "$KQ_KEY_AUDITOR" "$since" <<'PY'
import json, sys, urllib.request, urllib.parse
base, key, since = sys.argv[1:4]
def get(q):
    r = urllib.request.Request(base + "/api/v1/audit?" + q, headers={"Authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(r))
whole = get("since=%s&limit=1000" % urllib.parse.quote(since))["items"]
assert len(whole) == 6, whole
paged, cur = [], None
while True:
    d = get("since=%s&limit=1" % urllib.parse.quote(since) + ("&cursor=" + cur if cur else ""))
    paged += d["items"]
    cur = d["next_cursor"]
    if cur is None:
        break
assert [e["event_id"] for e in paged] == [e["event_id"] for e in whole]
PY
}

# "<seq_scan of events> <index>=<idx_scan> ..." for the events table
plan_counters() {
    kq_psql -c "SELECT (SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = 'kcqrs' AND relname = 'events') || ' ' || string_agg(indexrelname || '=' || idx_scan, ' ' ORDER BY indexrelname) FROM pg_stat_user_indexes WHERE schemaname = 'kcqrs' AND relname = 'events'"
}
# plan_check BEFORE: no sequential scan of events since BEFORE, and every index used since
plan_check() {
    python3 -c '
import sys
b, a = sys.argv[1].split(), sys.argv[2].split()
if a[0] != b[0]:
    sys.exit("a sequential scan of events: seq_scan %s -> %s" % (b[0], a[0]))
bi = dict(x.split("=") for x in b[1:]); ai = dict(x.split("=") for x in a[1:])
idle = [k for k in ai if int(ai[k]) <= int(bi[k])]
sys.exit("not used yet: %s" % idle if idle else 0)' "$1" "$(plan_counters)"
}

# The audit log keeps only the indexes the query API uses (ops/sql/0003): each
# PostgreSQL query kcqrs-query sends must be served by one of them. A query
# instance whose sessions have enable_seqscan off sends them: the planner then
# takes an index whenever one can serve the query, and scans the table only when
# none can, which the seq_scan counter of `events` would show.
@test "query: the audit log has exactly its four indexes, and every PostgreSQL query of kcqrs-query is served by one" {
    local since
    run kq_psql -c "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'kcqrs' AND tablename = 'events'"
    echo "$output"
    [ "$output" = "events_actor_time,events_pkey,events_time,events_type_time" ]
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
    create q6p-1
    req PUT /api/v1/resources/q6p-1 '{"name":"renamed"}'
    TOKEN=$(jf 'd["consistency_token"]')
    kq_psql -c "ALTER DATABASE ${KCQRS_PG_DSN##*/} SET enable_seqscan = off"
    qry_start q7
    # Other backends (earlier tests' sessions, which may scan the tiny table)
    # publish their counters up to ~10 s after they go idle: start from counters
    # that held still for 11 s, or a late flush reads as our scan.
    local before prev
    before=$(plan_counters)
    for _ in 1 2 3 4; do
        prev=$before
        sleep 11
        before=$(plan_counters)
        [ "$before" = "$prev" ] && break
    done
    QURL=$(qry_url q7) q "/api/v1/resources/q6p-1/events?consistent_with=$TOKEN"
    [ "$CODE" = 200 ]
    jcheck '[e["version"] for e in d["items"]] == [1, 2]'
    for f in "" "actor=e2e-writer" "event_type=ResourceUpdated" "aggregate_type=resource&aggregate_id=q6p-1" \
        "since=$since&until=2100-01-01T00:00:00Z" "aggregate_type=resource&since=$since&limit=1"; do
        QURL=$(qry_url q7) QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?$f"
        [ "$CODE" = 200 ]
        jcheck 'len(d["items"]) >= 1'
    done
    # statistics reach the shared counters when a backend goes idle (within ~10 s)
    kq_wait_for 25 plan_check "$before" || {
        echo "before: $before, after: $(plan_counters)"
        kq_psql -c "ALTER DATABASE ${KCQRS_PG_DSN##*/} RESET enable_seqscan"
        svc_stop q7
        return 1
    }
    kq_psql -c "ALTER DATABASE ${KCQRS_PG_DSN##*/} RESET enable_seqscan"
    svc_stop q7
}

@test "query: 1000 creates each read back at once with its token (LMDB), 200 through PostgreSQL" {
    python3 - "$CMD_URL" "$(qry_url q)" "$KQ_KEY_WRITER" "$KQ_KEY_READER" >"$BATS_FILE_TMPDIR/ryw.out" <<'PY'
import http.client, json, sys, time, urllib.parse
cmd, qry, wkey, rkey = sys.argv[1:5]
def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c, r = conn(cmd), conn(qry)
waits, bad = [], []
def once(i, path_fmt):
    rid = "q7-%04d" % i
    c.request("POST", "/api/v1/resources", json.dumps({"id": rid, "name": "n%d" % i}),
              {"Authorization": "Bearer " + wkey, "Content-Type": "application/json"})
    resp = c.getresponse(); body = json.loads(resp.read())
    assert resp.status == 201, (resp.status, body)
    t0 = time.monotonic()
    r.request("GET", path_fmt % rid, headers={"Authorization": "Bearer " + rkey,
                                              "X-Consistency-Token": body["consistency_token"]})
    resp = r.getresponse(); d = json.loads(resp.read())
    waits.append(time.monotonic() - t0)
    return resp.status, d, rid
for i in range(1000):
    st, d, rid = once(i, "/api/v1/resources/%s")
    if st != 200 or d.get("id") != rid or d.get("version") != 1:
        bad.append((rid, st, d))
lm = sorted(waits); waits.clear()
for i in range(1000, 1200):
    st, d, rid = once(i, "/api/v1/resources/%s/events")
    if st != 200 or [e["version"] for e in d.get("items", [])] != [1]:
        bad.append((rid, st, d))
pg = sorted(waits)
pct = lambda a, p: a[min(len(a) - 1, int(len(a) * p))] * 1000
print("lmdb read-after-write ms: p50 %.2f p99 %.2f max %.2f" % (pct(lm, .5), pct(lm, .99), lm[-1] * 1000))
print("pg read-after-write ms: p50 %.2f p99 %.2f max %.2f" % (pct(pg, .5), pct(pg, .99), pg[-1] * 1000))
r.request("GET", "/metrics")
m = r.getresponse().read().decode()
print("\n".join(l for l in m.splitlines() if l.startswith("kcqrs_query_wait")))
print("bad", len(bad), bad[:3])
sys.exit(1 if bad else 0)
PY
    local rc=$?
    cat "$BATS_FILE_TMPDIR/ryw.out"
    cp "$BATS_FILE_TMPDIR/ryw.out" "${QRY_RYW_OUT:-/dev/null}" 2>/dev/null || true
    [[ $rc == 0 ]]
    QURL= q /metrics
    [[ "$BODY" == *"kcqrs_query_waits_total"* ]]
}

@test "query: promtool check metrics passes; build_info and process metrics are there" {
    kq_check_metrics "$(qry_url q)/metrics"
}

@test "query: status reports Kafka, both read models' positions and lag, dead letters" {
    create q8-a
    q "/api/v1/resources/q8-a" -H "X-Consistency-Token: $TOKEN"
    kq_wait_for 20 bash -c "curl -s -H 'Authorization: Bearer $KQ_KEY_READER' '$(qry_url q)/api/v1/status' | python3 -c '
import json, sys
d = json.load(sys.stdin)
k, rm = d[\"kafka\"], d[\"read_models\"]
assert k[\"connected\"] is True and len(k[\"brokers\"]) == 1, k
t = k[\"topics\"][\"$KCQRS_TOPIC_PREFIX.resource.events\"][\"partitions\"]
assert len(t) >= 1 and all(p[\"high\"] >= 0 for p in t), t
assert d[\"dead_letters\"] == 0, d[\"dead_letters\"]
for n in (\"lmdb\", \"postgresql\"):
    assert rm[n][\"available\"] is True, rm[n]
    pos = rm[n][\"positions\"]
    assert len(pos) == 3 * len(t), pos
    # transaction markers: a caught-up partition is behind its end by at most one marker
    assert all(p[\"lag\"] <= 1 for p in pos.values()), pos
'"
    q /api/v1/status
    [[ "$CODE" == 200 ]]
}

# A read replica: a second query host with its own LMDB projector (own
# KCQRS_LMDB_DIR and admin port), beside the first one.
replica_proj_start() {
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-replica" KCQRS_PROJECTOR_ADDR="127.0.0.1:$(kq_free_port)" \
        svc_start proj2 "$BATS_FILE_TMPDIR/proj2.log.$(date +%s%N)" "$KCQRS_BIN/kcqrs-projector" --target lmdb
}

@test "query: a second query host with its own LMDB projector answers the same reads with the writer's tokens" {
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-replica"
    create qr-a "on both hosts"
    replica_proj_start
    qry_start qr KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-replica" KCQRS_QUERY_WAIT_MS=800
    local h
    for h in q qr; do
        QURL=$(qry_url $h) q /api/v1/resources/qr-a -H "X-Consistency-Token: $TOKEN"
        [[ "$CODE" == 200 ]]
        jcheck 'd["id"] == "qr-a" and d["name"] == "on both hosts" and d["version"] == 1'
        eval "body_$h=\$BODY"
    done
    [[ "$body_q" == "$body_qr" ]]
    req PUT /api/v1/resources/qr-a '{"name":"changed"}'
    TOKEN=$(jf 'd["consistency_token"]')
    for h in q qr; do
        QURL=$(qry_url $h) q "/api/v1/resources/qr-a?consistent_with=$TOKEN"
        [[ "$CODE" == 200 ]]
        jcheck 'd["name"] == "changed" and d["version"] == 2'
        [[ "$(hdr ETag)" == '"2"' ]]
    done
    # each host waits for its own projector: with the replica's stopped, its
    # host answers 503 projection_behind while the first host answers 200
    svc_stop proj2
    create qr-b
    QURL=$(qry_url q) q /api/v1/resources/qr-b -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    QURL=$(qry_url qr) q /api/v1/resources/qr-b -H "X-Consistency-Token: $TOKEN"
    assert_error 503
    jcheck 'd["code"] == "projection_behind"'
    replica_proj_start
    kq_wait_for 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $KQ_KEY_READER' -H 'X-Consistency-Token: $TOKEN' '$(qry_url qr)/api/v1/resources/qr-b') == 200 ]]"
    svc_stop qr
    svc_stop proj2
}

@test "query: a token the projector has not applied waits, is answered when it catches up, or 503s" {
    svc_stop proj
    create q9-a
    local tok=$TOKEN
    # with the projector stopped: 503 projection_behind after KCQRS_QUERY_WAIT_MS (3 s)
    local t0=$(date +%s%N)
    q /api/v1/resources/q9-a -H "X-Consistency-Token: $tok"
    assert_error 503
    jcheck 'd["code"] == "projection_behind"'
    assert_retry_after
    (( ($(date +%s%N) - t0) / 1000000 >= 2900 ))
    # /ready fails while the read models lag more than KCQRS_QUERY_READY_LAG events
    # (10: above the at most one transaction marker per caught-up partition)
    local i
    for i in $(seq 30); do create "q9-lag-$i"; done
    qry_start q4 KCQRS_QUERY_READY_LAG=10
    kq_wait_for 20 bash -c "curl -s '$(qry_url q4)/ready' | grep -q 'lag'"
    QURL=$(qry_url q4) REQ_KEY= q /ready
    [[ "$CODE" == 503 ]]
    # a waiting read is answered as soon as the projector applies the write
    ( QURL=$(qry_url q); curl -s -o "$BATS_FILE_TMPDIR/q9.body" -w '%{http_code}' \
        -H "Authorization: Bearer $KQ_KEY_READER" -H "X-Consistency-Token: $tok" \
        "$QURL/api/v1/resources/q9-a" >"$BATS_FILE_TMPDIR/q9.code" ) 3>&- &
    local waiter=$!
    sleep 0.3
    proj_start
    wait "$waiter"
    [[ "$(cat "$BATS_FILE_TMPDIR/q9.code")" == 200 ]]
    grep -q '"id":"q9-a"' "$BATS_FILE_TMPDIR/q9.body"
    kq_wait_for 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$(qry_url q4)/ready') == 200 ]]"
    QURL= q /metrics
    [[ "$BODY" =~ kcqrs_query_projection_behind_total\ [1-9] ]]
}

@test "query: PostgreSQL down -> 503 on its routes only; Kafka down -> status says so; no LMDB read model yet -> 503 not_ready" {
    create q10-a
    # both read models have the write (the last read, on q3, is from PostgreSQL)
    q_until 30 200 /api/v1/resources/q10-a -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    q_until 30 200 /api/v1/resources/q10-a/events -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    qry_start q2 KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$(kq_free_port)/none"
    QURL=$(qry_url q2) q /api/v1/resources/q10-a
    [[ "$CODE" == 200 ]]
    QURL=$(qry_url q2) q /api/v1/resources?limit=1
    [[ "$CODE" == 200 ]]
    QURL=$(qry_url q2) q /api/v1/resources/q10-a/events
    assert_error 503
    assert_retry_after
    QURL=$(qry_url q2) QKEY=$KQ_KEY_AUDITOR q /api/v1/audit
    assert_error 503
    QURL=$(qry_url q2) q /api/v1/status
    [[ "$CODE" == 200 ]]
    jcheck 'd["read_models"]["postgresql"]["available"] is False and d["read_models"]["lmdb"]["available"] is True'
    QURL=$(qry_url q2) REQ_KEY= q /ready
    [[ "$CODE" == 503 ]]

    # Kafka unreachable: /status still answers at once, saying so; reads go on
    qry_start q5 KCQRS_BROKERS="127.0.0.1:$(kq_free_port)" KCQRS_KAFKA_TIMEOUT_MS=1000
    # until its first check has run (before it the error is "not checked yet")
    kq_wait_for 30 bash -c "curl -s --max-time 3 -H 'Authorization: Bearer $KQ_KEY_READER' \
        '$(qry_url q5)/api/v1/status' | python3 -c 'import json, sys
k = json.load(sys.stdin)[\"kafka\"]
sys.exit(0 if k[\"connected\"] is False and k.get(\"error\") not in (None, \"not checked yet\") else 1)'"
    QURL=$(qry_url q5) q /api/v1/status --max-time 3
    [[ "$CODE" == 200 ]]
    jcheck 'd["kafka"]["connected"] is False and d["kafka"]["error"] and d["kafka"]["error"] != "not checked yet" and d["read_models"]["lmdb"]["available"] is True'
    QURL=$(qry_url q5) q /api/v1/resources/q10-a
    [[ "$CODE" == 200 ]]
    # the event stream is refused before any 200: 503 with Retry-After, the cause named
    QURL=$(qry_url q5) q /api/v1/events/stream --max-time 10
    assert_error 503
    assert_retry_after
    jcheck 'd["code"] == "unavailable" and d["detail"].startswith("Kafka is unavailable: ")'

    mkdir -p "$BATS_FILE_TMPDIR/empty"
    qry_start q3 KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/empty"
    QURL=$(qry_url q3) q /api/v1/resources/q10-a
    assert_error 503
    jcheck 'd["code"] == "not_ready"'
    QURL=$(qry_url q3) REQ_KEY= q /ready
    [[ "$CODE" == 503 ]]
    QURL=$(qry_url q3) q /api/v1/resources/q10-a/events
    [[ "$CODE" == 200 ]]
}

@test "query: ?snapshot=NAME serves a point-in-time model (LMDB and PostgreSQL); 404 unknown; 400 bad name or with a token; dropped -> 404" {
    local sch
    create q11-a "before"
    q /api/v1/resources/q11-a/events -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    # the snapshot, made the way kcqrs-replay names it: LMDB snapshots/NAME, schema kcqrs_snap_NAME
    build_model "$BATS_FILE_TMPDIR/snapbuild"
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read/snapshots"
    mv "$BATS_FILE_TMPDIR/snapbuild/readmodel" "$BATS_FILE_TMPDIR/lmdb-read/snapshots/before_q11"
    sch=$(events_schema)
    [[ -n "$sch" ]]
    kq_psql -c "DROP SCHEMA IF EXISTS kcqrs_snap_before_q11 CASCADE" \
        -c "CREATE SCHEMA kcqrs_snap_before_q11" \
        -c "CREATE TABLE kcqrs_snap_before_q11.events AS SELECT * FROM \"$sch\".events"

    req PUT /api/v1/resources/q11-a '{"name":"after"}'
    TOKEN=$(jf 'd["consistency_token"]')
    q /api/v1/resources/q11-a/events -H "X-Consistency-Token: $TOKEN"
    jcheck 'len(d["items"]) == 2'
    q /api/v1/resources/q11-a -H "X-Consistency-Token: $TOKEN"
    jcheck 'd["name"] == "after" and d["version"] == 2'

    q "/api/v1/resources/q11-a?snapshot=before_q11"
    [[ "$CODE" == 200 ]]
    jcheck 'd["name"] == "before" and d["version"] == 1'
    [[ "$(hdr ETag)" == '"1"' ]]
    q "/api/v1/resources?snapshot=before_q11&limit=5" # ids sort "q10-a" < "q11-a" < "q2-..."
    [[ "$CODE" == 200 ]]
    jcheck '[i["name"] for i in d["items"] if i["id"] == "q11-a"] == ["before"]'
    q "/api/v1/resources/q11-a/events?snapshot=before_q11"
    [[ "$CODE" == 200 ]]
    jcheck '[e["version"] for e in d["items"]] == [1] and d["items"][0]["payload"]["name"] == "before"'
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?snapshot=before_q11&aggregate_id=q11-a"
    [[ "$CODE" == 200 ]]
    jcheck '[e["event_type"] for e in d["items"]] == ["ResourceCreated"]'
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?aggregate_id=q11-a"
    jcheck '[e["event_type"] for e in d["items"]] == ["ResourceCreated", "ResourceUpdated"]'

    # unknown snapshot: 404 snapshot_not_found on every route
    for p in /api/v1/resources/q11-a /api/v1/resources /api/v1/resources/q11-a/events /api/v1/audit; do
        QKEY=$KQ_KEY_ADMIN q "$p?snapshot=nosuch"
        assert_error 404
        jcheck 'd["code"] == "snapshot_not_found"'
    done
    # bad names and tokens: 400 naming snapshot
    q "/api/v1/resources/q11-a?snapshot=Before"
    assert_error 400 snapshot
    q "/api/v1/resources?snapshot=a%27%3Bdrop"
    assert_error 400 snapshot
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?snapshot=..%2Fx"
    assert_error 400 snapshot
    q "/api/v1/resources/q11-a?snapshot=before_q11" -H "X-Consistency-Token: $TOKEN"
    assert_error 400 snapshot
    q "/api/v1/resources/q11-a/events?snapshot=before_q11&consistent_with=$TOKEN"
    assert_error 400 snapshot

    # dropped: gone at once (PostgreSQL) / within the 100 ms check (LMDB)
    rm -rf "$BATS_FILE_TMPDIR/lmdb-read/snapshots/before_q11"
    kq_psql -c "DROP SCHEMA kcqrs_snap_before_q11 CASCADE"
    sleep 0.3
    q "/api/v1/resources/q11-a?snapshot=before_q11"
    assert_error 404
    jcheck 'd["code"] == "snapshot_not_found"'
    q "/api/v1/resources/q11-a/events?snapshot=before_q11"
    assert_error 404
    jcheck 'd["code"] == "snapshot_not_found"'
}

@test "query: follows an LMDB read model swapped in (RENAME_EXCHANGE) or appearing, without a restart; no request fails meanwhile" {
    local dir="$BATS_FILE_TMPDIR/lmdb-read" url st out="$BATS_TEST_TMPDIR/gets"
    url=$(qry_url q)
    create q12-a "one"
    q /api/v1/resources/q12-a -H "X-Consistency-Token: $TOKEN"
    jcheck 'd["name"] == "one"'
    build_model "$BATS_FILE_TMPDIR/old" # a model of the log as it is now: q12-a is "one"
    req PUT /api/v1/resources/q12-a '{"name":"two"}'
    TOKEN=$(jf 'd["consistency_token"]')
    q /api/v1/resources/q12-a -H "X-Consistency-Token: $TOKEN"
    jcheck 'd["name"] == "two"'

    # swap the older model in while a client reads in a loop; the live projector is
    # stopped first (as kcqrs-replay's lock would hold it), then restarted on the new model
    svc_stop proj
    get_loop "$url" /api/v1/resources/q12-a "$out" </dev/null >/dev/null 2>&1 3>&- &
    local loop=$!
    sleep 0.5
    rm -rf "$dir/readmodel.shadow"
    mv "$BATS_FILE_TMPDIR/old/readmodel" "$dir/readmodel.shadow"
    exchange "$dir/readmodel.shadow" "$dir/readmodel"
    kq_wait_for 5 bash -c "tail -n 1 '$out' | grep -qx '200 one'"
    sleep 0.3
    touch "$out.stop"
    wait "$loop" || true
    # every answer was a 200, first "two", then "one" — never anything else
    st=$(awk '{ print $1 }' "$out" | sort | uniq -c)
    echo "$st"
    [[ $(awk '$1 != 200' "$out" | wc -l) -eq 0 ]]
    python3 - "$out" <<'PY'
import sys
names = [l.split()[1] for l in open(sys.argv[1])]
k = names.index("one")
assert k > 0 and set(names[:k]) == {"two"} and set(names[k:]) == {"one"}, names
PY
    QURL= REQ_KEY= q /metrics
    [[ "$BODY" =~ kcqrs_query_readmodel_switches_total\ [1-9] ]]

    # the projector continues in the swapped-in model; the query API's waiter now
    # watches that file: a token is answered as soon as it is applied
    proj_start
    req PUT /api/v1/resources/q12-a '{"name":"three"}'
    TOKEN=$(jf 'd["consistency_token"]')
    q /api/v1/resources/q12-a -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    jcheck 'd["name"] == "three" and d["version"] == 3'

    # a query API started before any read model existed takes one up when it appears
    rm -rf "$BATS_FILE_TMPDIR/late"
    mkdir -p "$BATS_FILE_TMPDIR/late"
    qry_start q6 KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/late"
    QURL=$(qry_url q6) q /api/v1/resources/q12-a
    assert_error 503
    jcheck 'd["code"] == "not_ready"'
    build_model "$BATS_FILE_TMPDIR/late"
    QURL=$(qry_url q6) q /api/v1/resources/q12-a
    [[ "$CODE" == 200 ]]
    jcheck 'd["name"] == "three"'
}

@test "query: ?snapshot= serves what kcqrs-replay rebuild --until built; drop-snapshot makes it 404" {
    local until
    create q13-a "as it was"
    q /api/v1/resources/q13-a/events -H "X-Consistency-Token: $TOKEN"
    [[ "$CODE" == 200 ]]
    until=$(jf 'd["items"][0]["occurred_at"]') # inclusive: the create is in, the update is not
    sleep 0.01
    req PUT /api/v1/resources/q13-a '{"name":"as it is","status":"archived"}'
    [[ "$CODE" == 200 ]]
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" run timeout 120 "$KCQRS_BIN/kcqrs-replay" \
        rebuild --target all --until "$until" --name q13 3>&-
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "$output" == *"snapshot=q13"* ]] # it says how to query it

    q "/api/v1/resources/q13-a?snapshot=q13"
    [[ "$CODE" == 200 ]]
    jcheck 'd["name"] == "as it was" and d["status"] == "active" and d["version"] == 1'
    q "/api/v1/resources?snapshot=q13&status=archived&limit=1000"
    [[ "$CODE" == 200 ]]
    jcheck 'all(i["id"] != "q13-a" for i in d["items"])'
    q "/api/v1/resources/q13-a/events?snapshot=q13"
    [[ "$CODE" == 200 ]]
    jcheck '[e["event_type"] for e in d["items"]] == ["ResourceCreated"]'
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?snapshot=q13&aggregate_id=q13-a"
    jcheck '[e["version"] for e in d["items"]] == [1]'
    q /api/v1/resources/q13-a # the live model moved on
    jcheck 'd["name"] == "as it is" and d["version"] == 2'

    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" run timeout 60 "$KCQRS_BIN/kcqrs-replay" \
        drop-snapshot --target all --name q13 3>&-
    echo "$output"
    [[ "$status" -eq 0 ]]
    sleep 0.3
    q "/api/v1/resources/q13-a?snapshot=q13"
    assert_error 404
    jcheck 'd["code"] == "snapshot_not_found"'
    QKEY=$KQ_KEY_AUDITOR q "/api/v1/audit?snapshot=q13"
    assert_error 404
    jcheck 'd["code"] == "snapshot_not_found"'
}
