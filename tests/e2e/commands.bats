#!/usr/bin/env bats
# commands.bats — kcqrs-commands black-box: the Resource commands of DESIGN.md
# section 8 over HTTP, checked against what the Kafka log holds. Every test
# takes the resource topic's end offsets (high watermarks, transaction markers
# included) before a rejected command and checks they did not move: no event,
# not even an aborted transaction, for any rejected command. Successful
# commands are checked in the log itself (tests/tools/kq_offsets dump).
#
# One instance ("main") for the file, on the suite's broker, with this file's
# topic prefix; the restart tests stop and start it (same port, same LMDB dir).

load helpers
load commands_helpers

setup_file() {
    cmd_make_keys
    # JSON log lines: the access log test below reads their fields.
    export KCQRS_LOG_FORMAT=json
    cmd_start main
}

teardown_file() {
    cmd_stop_all
}

setup() {
    cmd_use main
}

UUID4_RE='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

# The JSON envelope of record ID/VERSION from the dump.
event_json() {
    dump_of "$1" | awk -v k="$(printf '%s/%020d' "$1" "$2")" '$3 == k' | cut -d' ' -f5-
}

# ------------------------------------------------------------------ create

@test "create: 201 with Location, ETag, X-Consistency-Token and {id, version 1, consistency_token}" {
    id=$(new_id)
    before=$(ends_sum)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"Build server\",\"description\":\"rack 4\",\"status\":\"inactive\"}"
    [ "$CODE" = 201 ]
    jcheck "sorted(d) == ['consistency_token', 'id', 'version'] and d['id'] == '$id' and d['version'] == 1 and isinstance(d['consistency_token'], str) and d['consistency_token'] != ''"
    [[ "$(hdr Location)" == */api/v1/resources/$id ]]
    [ "$(hdr ETag)" = '"1"' ]
    [ "$(hdr X-Consistency-Token)" = "$(jf 'd["consistency_token"]')" ]
    [[ "$(hdr Content-Type)" == application/json* ]]
    [ "$(ends_sum)" -gt "$before" ]

    # The log: one ResourceCreated, version 1, in the aggregate's partition.
    run versions_of "$id"
    echo "$output"
    [ "$output" = "$(partition_for "$id" "${KCQRS_PARTITIONS:-6}") 1 ResourceCreated" ]
    BODY=$(event_json "$id" 1)
    echo "$BODY"
    jcheck "d['aggregate_type'] == 'resource' and d['aggregate_id'] == '$id' and d['version'] == 1 and d['actor'] == 'e2e-writer' and d['payload_type'] == 'ResourceCreated'"
    jcheck "d['payload'] == {'name': 'Build server', 'description': 'rack 4', 'status': 'inactive'}"
    jcheck "len(d['event_id']) == 16 and d['occurred_at_us'] > 1700000000000000"
}

@test "create without id: a UUID v4 is generated and returned" {
    req POST /api/v1/resources '{"name":"no id given"}'
    [ "$CODE" = 201 ]
    id=$(jf 'd["id"]')
    [[ "$id" =~ $UUID4_RE ]]
    [[ "$(hdr Location)" == */api/v1/resources/$id ]]
    jcheck "d['version'] == 1"
    run versions_of "$id"
    echo "$output"
    [ "$output" = "$(partition_for "$id" "${KCQRS_PARTITIONS:-6}") 1 ResourceCreated" ]
    # Status defaults to active.
    BODY=$(event_json "$id" 1)
    jcheck "d['payload']['name'] == 'no id given' and d['payload'].get('status', 'active') == 'active'"
}

@test "create of an existing id: 409, nothing appended" {
    id=$(new_id)
    create_resource "$id" first
    before=$(ends_sum)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"second\"}"
    assert_error 409
    assert_ends_unchanged "$before"
    run versions_of "$id"
    [ "$output" = "$(partition_for "$id" "${KCQRS_PARTITIONS:-6}") 1 ResourceCreated" ]
}

# ------------------------------------------------------------------ update, delete

@test "update: 200 with version 2, ETag and token; ResourceUpdated holds only the changed fields" {
    id=$(new_id)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"n1\",\"description\":\"same\",\"status\":\"active\"}"
    [ "$CODE" = 201 ]
    t1=$(jf 'd["consistency_token"]')
    # name changes; description and status are sent with their current values.
    req PUT "/api/v1/resources/$id" '{"name":"n2","description":"same","status":"active"}'
    [ "$CODE" = 200 ]
    jcheck "sorted(d) == ['consistency_token', 'id', 'version'] and d['id'] == '$id' and d['version'] == 2"
    [ "$(hdr ETag)" = '"2"' ]
    [ "$(hdr X-Consistency-Token)" = "$(jf 'd["consistency_token"]')" ]
    [ "$(jf 'd["consistency_token"]')" != "$t1" ]
    BODY=$(event_json "$id" 2)
    echo "$BODY"
    jcheck "d['payload_type'] == 'ResourceUpdated' and d['version'] == 2 and d['payload'] == {'name': 'n2'}"

    # Only the status changes.
    req PUT "/api/v1/resources/$id" '{"status":"archived"}'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
    BODY=$(event_json "$id" 3)
    jcheck "d['payload'] == {'status': 'archived'}"
    # An empty description is a change too (0..4096 characters).
    req PUT "/api/v1/resources/$id" '{"description":""}'
    [ "$CODE" = 200 ]
    BODY=$(event_json "$id" 4)
    jcheck "d['payload'] == {'description': ''}"
    run versions_of "$id"
    echo "$output"
    p=$(partition_for "$id" "${KCQRS_PARTITIONS:-6}")
    [ "$output" = "$p 1 ResourceCreated
$p 2 ResourceUpdated
$p 3 ResourceUpdated
$p 4 ResourceUpdated" ]
}

@test "delete: 200 with the next version; afterwards PUT and DELETE are 404 and create of the id is 409" {
    id=$(new_id)
    create_resource "$id"
    req PUT "/api/v1/resources/$id" '{"name":"renamed"}'
    [ "$CODE" = 200 ]
    req DELETE "/api/v1/resources/$id"
    [ "$CODE" = 200 ]
    jcheck "sorted(d) == ['consistency_token', 'id', 'version'] and d['id'] == '$id' and d['version'] == 3"
    [ "$(hdr X-Consistency-Token)" = "$(jf 'd["consistency_token"]')" ]
    BODY=$(event_json "$id" 3)
    jcheck "d['payload_type'] == 'ResourceDeleted' and d['actor'] == 'e2e-writer'"

    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"again"}'
    assert_error 404
    req DELETE "/api/v1/resources/$id"
    assert_error 404
    req PUT "/api/v1/resources/$id" '{"name":"again"}' -H 'If-Match: "3"'
    assert_error 404
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"reborn\"}"
    assert_error 409
    assert_ends_unchanged "$before"
    run versions_of "$id"
    [ "$(wc -l <<<"$output")" = 3 ]
}

@test "unknown id: PUT and DELETE are 404, nothing appended" {
    before=$(ends_sum)
    req PUT /api/v1/resources/never-created-x1 '{"name":"x"}'
    assert_error 404
    req DELETE /api/v1/resources/never-created-x1
    assert_error 404
    assert_ends_unchanged "$before"
}

# ------------------------------------------------------------------ If-Match

@test "If-Match: a stale version is 412 with the current version, nothing appended; the current one is 200" {
    id=$(new_id)
    create_resource "$id"
    req PUT "/api/v1/resources/$id" '{"name":"v2"}' -H 'If-Match: "1"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 2"
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"lost update"}' -H 'If-Match: "1"'
    assert_error 412
    # The current version is in the answer (a "version"/"current_version" member, anywhere).
    python3 -c '
import json, sys
def ints(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            if "version" in k and isinstance(x, int) and not isinstance(x, bool):
                out.append(x)
            ints(x, out)
    elif isinstance(v, list):
        for x in v:
            ints(x, out)
    return out
found = ints(json.loads(sys.argv[1]), [])
sys.exit(0 if found and all(x == 2 for x in found) else 1)' "$BODY" ||
        kq_fail "412 answer does not carry the current version 2: $BODY"
    req PUT "/api/v1/resources/$id" '{"name":"future"}' -H 'If-Match: "7"'
    assert_error 412
    req DELETE "/api/v1/resources/$id" - -H 'If-Match: "1"'
    assert_error 412
    assert_ends_unchanged "$before"

    req DELETE "/api/v1/resources/$id" - -H 'If-Match: "2"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
    run versions_of "$id"
    echo "$output"
    [ "$(cut -d' ' -f2- <<<"$output" | tr '\n' ,)" = "1 ResourceCreated,2 ResourceUpdated,3 ResourceDeleted," ]
}

# ------------------------------------------------------------------ idempotency

@test "Idempotency-Key: a retry with the same key and body gets the original answer and appends nothing" {
    id=$(new_id)
    key="idem-$id"
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"once\"}" -H "Idempotency-Key: $key"
    [ "$CODE" = 201 ]
    first="$BODY"
    first_tok=$(hdr X-Consistency-Token)
    before=$(ends_sum)
    for i in 1 2; do
        req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"once\"}" -H "Idempotency-Key: $key"
        [ "$CODE" = 201 ]
        jsame "$first"
        [ "$(hdr X-Consistency-Token)" = "$first_tok" ]
    done
    assert_ends_unchanged "$before"
    BODY=$(event_json "$id" 1)
    jcheck "d['command_id'] == '$key'"

    # An update, retried: same version, same token.
    req PUT "/api/v1/resources/$id" '{"name":"twice?"}' -H "Idempotency-Key: $key-u"
    [ "$CODE" = 200 ]
    upd="$BODY"
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"twice?"}' -H "Idempotency-Key: $key-u"
    [ "$CODE" = 200 ]
    jsame "$upd"
    jcheck "d['version'] == 2"
    assert_ends_unchanged "$before"
    # Still the original answer after the resource moved on to version 3.
    req PUT "/api/v1/resources/$id" '{"name":"three"}'
    [ "$CODE" = 200 ]
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"twice?"}' -H "Idempotency-Key: $key-u"
    [ "$CODE" = 200 ]
    jsame "$upd"
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"once\"}" -H "Idempotency-Key: $key"
    [ "$CODE" = 201 ]
    jsame "$first"
    assert_ends_unchanged "$before"
    run versions_of "$id"
    [ "$(wc -l <<<"$output")" = 3 ]
}

@test "Idempotency-Key reused with another body: 422, nothing appended" {
    id=$(new_id)
    key="idem-$id"
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"original\"}" -H "Idempotency-Key: $key"
    [ "$CODE" = 201 ]
    before=$(ends_sum)
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"different\"}" -H "Idempotency-Key: $key"
    assert_error 422
    # Same key on another command (an update of the same resource).
    req PUT "/api/v1/resources/$id" '{"name":"different"}' -H "Idempotency-Key: $key"
    assert_error 422
    assert_ends_unchanged "$before"
    run versions_of "$id"
    [ "$(wc -l <<<"$output")" = 1 ]
}

# ------------------------------------------------------------------ validation

# bad_create BODY FIELD [STATUS]: POST is refused with STATUS (400) naming FIELD.
bad_create() {
    req POST /api/v1/resources "$1"
    assert_error "${3:-400}" "$2"
}

@test "validation: malformed JSON, duplicate keys, invalid UTF-8, non-object are 400 on 'body', nothing appended" {
    before=$(ends_sum)
    bad_create '{"name": "x"' body
    bad_create '{"name":"x"} trailing' body
    bad_create '{"name":"a","name":"b"}' body
    printf '{"name":"bad \xc3\x28 utf8"}' >"$BATS_TEST_TMPDIR/badutf8.json"
    bad_create "@$BATS_TEST_TMPDIR/badutf8.json" body
    printf '{"name":"over\xf0\x9f\x98"}' >"$BATS_TEST_TMPDIR/truncated.json"
    bad_create "@$BATS_TEST_TMPDIR/truncated.json" body
    bad_create '["name","x"]' body
    bad_create '{"name":"nul \u0000 byte"}' body
    assert_ends_unchanged "$before"
}

@test "validation: wrong types, unknown field, bad status enum are 400 naming the field, nothing appended" {
    before=$(ends_sum)
    bad_create '{"name":5}' name
    bad_create '{"name":"x","description":["d"]}' description
    bad_create '{"name":"x","status":1}' status
    bad_create '{"id":42,"name":"x"}' id
    bad_create '{"name":null}' name
    bad_create '{"name":"x","color":"red"}' color
    bad_create '{"name":"x","status":"deleted"}' status
    bad_create '{"name":"x","status":"Active"}' status
    bad_create '{"description":"no name"}' name
    # Updates are validated too.
    id=$(new_id)
    create_resource "$id"
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"status":"gone"}'
    assert_error 400 status
    req PUT "/api/v1/resources/$id" '{"name":""}'
    assert_error 400 name
    req PUT "/api/v1/resources/$id" '{"id":"other"}'
    assert_error 400 id
    req PUT "/api/v1/resources/$id" '{"name":"x","owner":"me"}'
    assert_error 400 owner
    assert_ends_unchanged "$before"
}

@test "validation: control characters (C0, DEL, C1) in name and description are 400 naming the field; description allows TAB/LF/CR" {
    before=$(ends_sum)
    bad_create '{"name":"a\u0001b"}' name
    bad_create '{"name":"a\u001b[2Jb"}' name
    bad_create '{"name":"tab\there"}' name
    bad_create '{"name":"x\u007f"}' name
    bad_create '{"name":"x\u0085"}' name
    printf '{"name":"raw C1 \xc2\x9b"}' >"$BATS_TEST_TMPDIR/c1.json"
    bad_create "@$BATS_TEST_TMPDIR/c1.json" name
    bad_create '{"name":"n","description":"a\u0007b"}' description
    bad_create '{"name":"n","description":"a\u009fb"}' description
    req POST /api/v1/resources '{"name":"a\u0001","description":"b\u001b"}'
    assert_error 400 name
    assert_error 400 description
    jcheck "len(d['errors']) == 2 and 'U+0001' in d['errors'][0]['message'] + d['errors'][1]['message']"
    # update
    id=$(new_id)
    create_resource "$id"
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"b\u001b"}'
    assert_error 400 name
    req PUT "/api/v1/resources/$id" '{"description":"b\u0000"}'
    assert_error 400 body
    req PUT "/api/v1/resources/$id" '{"description":"\u0080"}'
    assert_error 400 description
    assert_ends_unchanged "$before"
    # multi-line descriptions are text
    req POST /api/v1/resources '{"name":"n","description":"line 1\r\nline 2\tand a tab"}'
    [[ "$CODE" == 201 ]] || kq_fail "multi-line description refused: $CODE $BODY"
    req PUT "/api/v1/resources/$id" '{"description":"l1\nl2"}'
    [[ "$CODE" == 200 ]] || kq_fail "multi-line description update refused: $CODE $BODY"
}

@test "validation: one detail per offending field, all of them in one answer" {
    before=$(ends_sum)
    req POST /api/v1/resources '{"name":"","status":"nope","extra":1}'
    assert_error 400
    jcheck "sorted(x['field'] for x in d['errors']) == ['extra', 'name', 'status']"
    req POST /api/v1/resources "{\"id\":\"a b\",\"name\":\"$(printf 'n%.0s' $(seq 256))\",\"description\":7}"
    assert_error 400
    jcheck "sorted(x['field'] for x in d['errors']) == ['description', 'id', 'name']"
    assert_ends_unchanged "$before"
}

@test "validation: lengths (name 1..255, description 0..4096, in characters) and id syntax" {
    before=$(ends_sum)
    n256=$(printf 'n%.0s' $(seq 256))
    d4097=$(printf 'd%.0s' $(seq 4097))
    bad_create "{\"name\":\"$n256\"}" name
    bad_create '{"name":""}' name
    bad_create "{\"name\":\"x\",\"description\":\"$d4097\"}" description
    bad_create '{"id":"a b","name":"x"}' id
    bad_create "{\"id\":\"$(printf 'i%.0s' $(seq 65))\",\"name\":\"x\"}" id
    bad_create '{"id":"","name":"x"}' id
    bad_create '{"id":"a/b","name":"x"}' id
    bad_create '{"id":"é","name":"x"}' id
    assert_ends_unchanged "$before"

    # The limits themselves are accepted: 255 characters of 4 bytes each, a
    # 4096-character description, a 64-character id.
    e255=$(python3 -c 'print("\U0001F600" * 255)')
    id64="$(printf 'a%.0s' $(seq 60))$RANDOM"
    id64=${id64:0:64}
    req POST /api/v1/resources "{\"id\":\"$id64\",\"name\":\"$e255\",\"description\":\"${d4097:1}\"}"
    [ "$CODE" = 201 ]
    BODY=$(event_json "$id64" 1)
    jcheck "len(d['payload']['name']) == 255 and len(d['payload']['description']) == 4096"
}

@test "body over 64 KiB: 413; missing or wrong Content-Type: 415; nothing appended" {
    before=$(ends_sum)
    python3 -c 'import json; print(json.dumps({"name": "big", "description": "x" * 70000}))' \
        >"$BATS_TEST_TMPDIR/big.json"
    req POST /api/v1/resources "@$BATS_TEST_TMPDIR/big.json"
    assert_error 413
    REQ_CT="" req POST /api/v1/resources '{"name":"x"}'
    assert_error 415
    REQ_CT="text/plain" req POST /api/v1/resources '{"name":"x"}'
    assert_error 415
    REQ_CT="application/x-www-form-urlencoded" req POST /api/v1/resources 'name=x'
    assert_error 415
    id=$(new_id)
    create_resource "$id"
    before=$(ends_sum)
    REQ_CT="text/plain" req PUT "/api/v1/resources/$id" '{"name":"y"}'
    assert_error 415
    req PUT "/api/v1/resources/$id" "@$BATS_TEST_TMPDIR/big.json"
    assert_error 413
    assert_ends_unchanged "$before"
    # "application/json; charset=utf-8" is JSON.
    REQ_CT="application/json; charset=utf-8" req PUT "/api/v1/resources/$id" '{"name":"y"}'
    [ "$CODE" = 200 ]
}

@test "garbage in: 400 mutated bodies, headers and paths get 4xx (or a 2xx and exactly its event), never a 5xx or a crash" {
    id=$(new_id)
    create_resource "$id"
    dump_topic | cut -d' ' -f3 | sort >"$BATS_TEST_TMPDIR/keys.before"
    run python3 - "$CMD_URL" "$KQ_KEY_WRITER" "$id" <<'PY'
import http.client, json, random, sys, urllib.parse
url, key, rid = sys.argv[1:4]
u = urllib.parse.urlparse(url)
rng = random.Random(1234)
seeds = [b'{"id":"%s","name":"n","description":"d","status":"active"}' % rid.encode(),
         b'{"name":"\\u00e9\\ud83d\\ude00","status":"archived"}',
         b'{"description":"x"}']
paths = ["/api/v1/resources", "/api/v1/resources/" + rid, "/api/v1/resources/%00",
         "/api/v1/resources/" + "a" * 300, "/api/v1/resources/../resources", "/api/v1/resources/a%20b",
         "/api/v1/resources/" + rid + "/x", "/api/v1//resources", "/api/v1/resources?x=1"]
def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 3)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b: b[i] = rng.randrange(256)
        elif op == 1 and b: del b[i]
        elif op == 2: b[i:i] = bytes([rng.choice(b'{}[]",:\\\x00\xff0e-')])
        else: b[i:i] = b[i:i + rng.randint(1, 8)]
    return bytes(b)
counts, ok, bad = {}, 0, []
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
for n in range(400):
    if rng.random() < 0.7:
        method, path = rng.choice([("POST", paths[0]), ("PUT", paths[1]), ("PUT", paths[1])])
    else:
        method, path = rng.choice(["POST", "PUT", "DELETE", "PATCH", "GET"]), rng.choice(paths)
    body = mutate(rng.choice(seeds))
    hdrs = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if rng.random() < 0.2: hdrs["If-Match"] = rng.choice(['"1"', '"0"', '"-1"', '"99999999999999999999"', '*', '"', 'W/"1"'])
    if rng.random() < 0.2: hdrs["Idempotency-Key"] = rng.choice(["k1", "", "x" * 300, "k\u00e9".encode().decode("latin-1")])
    if rng.random() < 0.05: hdrs["Content-Type"] = rng.choice(["application/json; charset=latin1", "application/jsonx", ""])
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        answer = r.read()
        st = r.status
    except (http.client.HTTPException, OSError) as e:
        conn.close()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        st = "conn:" + type(e).__name__
    counts[st] = counts.get(st, 0) + 1
    if isinstance(st, int) and 200 <= st < 300 and method in ("POST", "PUT", "DELETE"):
        ok += 1
        try:
            a = json.loads(answer)
            print("success %s/%020d" % (a["id"], a["version"]))
        except (ValueError, KeyError, TypeError):
            bad.append("%s %s -> %s with answer %r" % (method, path, st, answer[:200]))
    if not isinstance(st, int) or st >= 500:
        bad.append("%s %s %r -> %s" % (method, path, body[:80], st))
print("statuses:", sorted(counts.items(), key=str))
print("successes", ok)
for b in bad[:10]:
    print("BAD:", b)
sys.exit(1 if bad else 0)
PY
    echo "$output"
    [ "$status" -eq 0 ]
    # The service lives, and the log gained exactly the events of the
    # successes (a replay or a no-op update answers 2xx with a version that is
    # already in the log).
    kq_wait_for 5 curl -fsS -o /dev/null "$CMD_URL/health"
    dump_topic | cut -d' ' -f3 | sort >"$BATS_TEST_TMPDIR/keys.after"
    awk '/^success / { print $2 }' <<<"$output" | sort -u >"$BATS_TEST_TMPDIR/keys.acked"
    new=$(comm -13 "$BATS_TEST_TMPDIR/keys.before" "$BATS_TEST_TMPDIR/keys.after")
    acked_new=$(comm -23 "$BATS_TEST_TMPDIR/keys.acked" "$BATS_TEST_TMPDIR/keys.before")
    echo "new records: $(wc -w <<<"$new")"
    [ "$new" = "$acked_new" ]
    [ "$(sort <"$BATS_TEST_TMPDIR/keys.after" | uniq -d | wc -l)" = 0 ]
}

# ------------------------------------------------------------------ auth

@test "auth: no key 401, bad key 401, reader key 403, nothing appended; the actor is the key's name" {
    id=$(new_id)
    before=$(ends_sum)
    REQ_KEY="" req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"x\"}"
    assert_error 401
    REQ_KEY="kq_0000000000000000000000000000000000000000000000000000000000000000" \
        req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"x\"}"
    assert_error 401
    REQ_KEY="$KQ_KEY_READER" req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"x\"}"
    assert_error 403
    REQ_KEY="" req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"x\"}" -H "Authorization: Basic $(printf "e2e-writer:%s" "$KQ_KEY_WRITER" | base64 -w0)"
    assert_error 401
    assert_ends_unchanged "$before"

    REQ_KEY="$KQ_KEY_ADMIN" req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"x\"}"
    [ "$CODE" = 201 ]
    before=$(ends_sum)
    REQ_KEY="$KQ_KEY_READER" req PUT "/api/v1/resources/$id" '{"name":"y"}'
    assert_error 403
    REQ_KEY="$KQ_KEY_READER" req DELETE "/api/v1/resources/$id"
    assert_error 403
    REQ_KEY="" req DELETE "/api/v1/resources/$id"
    assert_error 401
    assert_ends_unchanged "$before"
    req PUT "/api/v1/resources/$id" '{"name":"y"}'
    [ "$CODE" = 200 ]
    BODY=$(event_json "$id" 1)
    jcheck "d['actor'] == 'e2e-admin'"
    BODY=$(event_json "$id" 2)
    jcheck "d['actor'] == 'e2e-writer'"
}

# auth_code KEY: the status of an empty create with KEY (400 once the key is
# accepted: validation comes after authentication; 401 when it is not).
auth_code() {
    curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $1" \
        -H 'Content-Type: application/json' -d '{}' "$CMD_URL/api/v1/resources"
}
auth_code_is() { [[ "$(auth_code "$1")" == "$2" ]]; }

@test "keys: create, rotate and revoke reach the running service without a restart; a broken keys file keeps the keys loaded" {
    local f="$KCQRS_KEYS_FILE" k1 k2 t0 id
    k1=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-rot --roles writer --file "$f")
    # created after the start: accepted within KCQRS_KEYS_RELOAD_MS (1 s) and a request
    kq_wait_for 5 auth_code_is "$k1" 400
    # rotate: the new key works, the old one is refused (no overlap)
    k2=$("$KCQRS_BIN/kcqrs-keys" rotate --name e2e-rot --file "$f")
    [[ "$k2" == kq_* && "$k2" != "$k1" ]]
    kq_wait_for 5 auth_code_is "$k2" 400
    [ "$(auth_code "$k1")" = 401 ]
    id=$(new_id)
    REQ_KEY=$k2 create_resource "$id" rotated
    [ "$(event_json "$id" 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["actor"])')" = e2e-rot ]
    # a broken file: a warning, the keys loaded stay, nothing crashes
    cp "$f" "$BATS_TEST_TMPDIR/keys.good"
    echo "broken line" >>"$f"
    # (the file is looked at by requests: one every 0.1 s while waiting)
    kq_wait_for 5 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer $k2' \
        -H 'Content-Type: application/json' -d '{}' $CMD_URL/api/v1/resources) == 400 ]] &&
        grep -q 'API keys: .*expected 3 fields.*keeping the' '$BATS_FILE_TMPDIR/main.log'"
    [ "$(auth_code "$k2")" = 400 ]
    cp "$BATS_TEST_TMPDIR/keys.good" "$f"
    # revoke: 401 within 5 s (the reload interval is 1 s)
    "$KCQRS_BIN/kcqrs-keys" revoke --name e2e-rot --file "$f"
    t0=$(date +%s%N)
    kq_wait_for 5 auth_code_is "$k2" 401
    echo "revoked key refused after $((($(date +%s%N) - t0) / 1000000)) ms"
    [ "$(auth_code "$KQ_KEY_WRITER")" = 400 ] # the others still work
    run "$KCQRS_BIN/kcqrs-keys" revoke --name e2e-rot --file "$f"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no key named 'e2e-rot'"* ]]
    kill -0 "$(cmd_pid main)"
}

@test "health, ready and metrics need no key" {
    REQ_KEY="" req GET /health
    [ "$CODE" = 200 ]
    REQ_KEY="" req GET /ready
    [ "$CODE" = 200 ]
    REQ_KEY="" req GET /metrics
    [ "$CODE" = 200 ]
    [[ "$BODY" == *"# TYPE"* ]]
}

@test "metrics: events appended, transactions committed and requests by route and status follow the commands" {
    appended=$(metric kcqrs_commands_events_appended_total)
    committed=$(metric 'kcqrs_commands_transactions_total{result="committed"}')
    created=$(metric 'kcqrs_http_requests_total{route="resource_create",method="POST",status="201"}')
    refused=$(metric 'kcqrs_http_requests_total{route="resource_create",method="POST",status="400"}')
    before=$(ends_sum)
    for i in 1 2 3; do
        create_resource "$(new_id)-m$i"
    done
    req POST /api/v1/resources '{"name":""}'
    assert_error 400 name
    # Three events, each in its own committed transaction (one marker each).
    [ "$(ends_sum)" = $((before + 6)) ]
    [ "$(metric kcqrs_commands_events_appended_total)" = $((appended + 3)) ]
    [ "$(metric 'kcqrs_commands_transactions_total{result="committed"}')" = $((committed + 3)) ]
    [ "$(metric 'kcqrs_http_requests_total{route="resource_create",method="POST",status="201"}')" = $((created + 3)) ]
    [ "$(metric 'kcqrs_http_requests_total{route="resource_create",method="POST",status="400"}')" = $((refused + 1)) ]
    [ "$(metric kcqrs_commands_ready)" = 1 ]
    [ "$(metric kcqrs_commands_fenced)" = 0 ]
}

@test "metrics: promtool check metrics passes; build_info and process metrics are there" {
    kq_check_metrics "$CMD_URL/metrics"
}

@test "X-Request-Id on every answer: a sane one is echoed, anything else replaced by a UUID" {
    rid="e2e-rid.$RANDOM:$RANDOM"
    req GET /health - -H "X-Request-Id: $rid"
    [ "$CODE" = 200 ]
    [ "$(hdr X-Request-Id)" = "$rid" ]
    for bad in "has space" "$(printf 'x%.0s' {1..65})" 'quote"d' "caf$(printf '\xc3\xa9')"; do
        req GET /no-such-route - -H "X-Request-Id: $bad"
        [ "$CODE" = 404 ]
        [[ "$(hdr X-Request-Id)" =~ $UUID4_RE ]] || kq_fail "bad id $bad answered with $(hdr X-Request-Id)"
    done
    # none given: a new one per answer, also on 401 and on the server's own 4xx
    REQ_KEY="" req POST /api/v1/resources '{"name":"x"}'
    [ "$CODE" = 401 ]
    a=$(hdr X-Request-Id)
    REQ_KEY="" req POST /api/v1/resources '{"name":"x"}'
    [[ "$a" =~ $UUID4_RE && "$(hdr X-Request-Id)" =~ $UUID4_RE && "$a" != "$(hdr X-Request-Id)" ]]
    run python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /health HTTP/1.1\r\n\r\n")  # no Host: the parser refuses it
print(s.recv(65536).decode("latin-1"))' "${CMD_URL##*:}"
    echo "$output"
    [[ "${lines[0]}" == "HTTP/1.1 400 "* ]]
    grep -Eiq $'^x-request-id: [0-9a-f-]{36}\r?$' <<<"$output"
}

@test "JSON access log: request id, route, status, duration, actor, aggregate id and trace id as fields; probes only at debug" {
    local log="$BATS_FILE_TMPDIR/main.log"
    rid="e2e-log-$RANDOM$RANDOM"
    rid2="e2e-log2-$RANDOM$RANDOM"
    probe="e2e-probe-$RANDOM$RANDOM"
    id=$(new_id)
    tp="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    REQ_KEY="" req GET /health - -H "X-Request-Id: $probe"
    REQ_KEY="" req GET /metrics - -H "X-Request-Id: $probe"
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"logged\"}" \
        -H "X-Request-Id: $rid" -H "traceparent: $tp"
    [ "$CODE" = 201 ]
    # a path parameter is the aggregate id when the handler names none (the body is refused
    # before any command is made); a malformed traceparent starts a new trace: its id is logged
    req PUT "/api/v1/resources/$id-absent" '{' -H "X-Request-Id: $rid2" -H "traceparent: 00-zz-bad"
    [ "$CODE" = 400 ]
    kq_wait_for 10 grep -qF "\"request_id\":\"$rid2\"" "$log"
    kq_wait_for 10 grep -qF "\"request_id\":\"$rid\"" "$log"
    # one pass over the log checks both lines, and that the probes (answered before them,
    # logged at debug) and no /health, /ready or /metrics line at all are there
    run python3 - "$log" "$rid" "$rid2" "$probe" "$id" <<'PY'
import json, sys
log, rid, rid2, probe, agg = sys.argv[1:]
by_id, probes = {}, 0
for line in open(log):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if "request_id" in d:
        by_id.setdefault(d["request_id"], []).append(d)
    if d.get("route") in ("health", "ready", "metrics"):
        probes += 1
a, b = by_id[rid], by_id[rid2]
assert len(a) == 1 and len(b) == 1, (a, b)
a, b = a[0], b[0]
print(json.dumps(a)); print(json.dumps(b))
want = {"level": "info", "prog": "kcqrs-commands", "method": "POST", "route": "resource_create",
        "path": "/api/v1/resources", "status": 201, "actor": "e2e-writer", "aggregate_id": agg,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "client": "127.0.0.1"}
for k, v in want.items():
    assert a.get(k) == v, (k, a.get(k), v)
assert isinstance(a["duration_ms"], (int, float)) and 0 <= a["duration_ms"] < 30000, a
assert rid in a["msg"] and " 201 " in a["msg"], a["msg"]
assert b["aggregate_id"] == agg + "-absent" and b["status"] == 400, b
assert b["route"] == "resource_update" and b["level"] == "info", b
assert len(b["trace_id"]) == 32 and b["trace_id"] != a["trace_id"], b
int(b["trace_id"], 16)
assert probe not in by_id and probes == 0, (probe in by_id, probes)
PY
    echo "$output"
    [ "$status" -eq 0 ]
}

# ------------------------------------------------------------------ restart

@test "restart: versions continue from the log and idempotency keys still give the original answer" {
    id=$(new_id)
    gone=$(new_id)-gone
    create_resource "$id"
    req PUT "/api/v1/resources/$id" '{"name":"before restart"}' -H "Idempotency-Key: restart-$id"
    [ "$CODE" = 200 ]
    orig="$BODY"
    orig_tok=$(hdr X-Consistency-Token)
    create_resource "$gone"
    req DELETE "/api/v1/resources/$gone"
    [ "$CODE" = 200 ]

    cmd_stop main
    cmd_start main
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"before restart"}' -H "Idempotency-Key: restart-$id"
    [ "$CODE" = 200 ]
    jsame "$orig"
    [ "$(hdr X-Consistency-Token)" = "$orig_tok" ]
    req PUT "/api/v1/resources/$id" '{"name":"other body"}' -H "Idempotency-Key: restart-$id"
    assert_error 422
    req PUT "/api/v1/resources/$id" '{"name":"stale"}' -H 'If-Match: "1"'
    assert_error 412
    req POST /api/v1/resources "{\"id\":\"$id\",\"name\":\"dup\"}"
    assert_error 409
    req PUT "/api/v1/resources/$gone" '{"name":"zombie"}'
    assert_error 404
    assert_ends_unchanged "$before"

    req PUT "/api/v1/resources/$id" '{"name":"after restart"}' -H 'If-Match: "2"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
    run versions_of "$id"
    echo "$output"
    [ "$(cut -d' ' -f2 <<<"$output" | tr '\n' ,)" = "1,2,3," ]
}

@test "restart without the LMDB snapshot: state is rebuilt from the log alone" {
    id=$(new_id)
    create_resource "$id"
    req PUT "/api/v1/resources/$id" '{"name":"v2"}' -H "Idempotency-Key: nosnap-$id"
    [ "$CODE" = 200 ]
    orig="$BODY"
    cmd_stop main
    rm -rf "$BATS_FILE_TMPDIR/lmdb-main"
    cmd_start main
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"v2"}' -H "Idempotency-Key: nosnap-$id"
    [ "$CODE" = 200 ]
    jsame "$orig"
    req PUT "/api/v1/resources/$id" '{"name":"stale"}' -H 'If-Match: "1"'
    assert_error 412
    assert_ends_unchanged "$before"
    req PUT "/api/v1/resources/$id" '{"name":"v3"}' -H 'If-Match: "2"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
}

@test "restart: until caught up a command gets 503 with Retry-After (or no connection), never a wrong answer" {
    id=$(new_id)
    create_resource "$id"
    cmd_stop main
    CMD_NO_WAIT=1 cmd_start main
    deadline=$(($(date +%s) + 60))
    seen=""
    while :; do
        code=$(curl -s -o "$BATS_TEST_TMPDIR/early.body" -D "$BATS_TEST_TMPDIR/early.h" -w '%{http_code}' \
            --max-time 30 -X PUT -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
            -H 'If-Match: "1"' --data-binary '{"name":"early"}' "$CMD_URL/api/v1/resources/$id") || true
        seen="$seen $code"
        case "$code" in
        000) ;;
        503)
            grep -qi '^Retry-After: *[0-9]' "$BATS_TEST_TMPDIR/early.h" ||
                kq_fail "503 without Retry-After: $(cat "$BATS_TEST_TMPDIR/early.h")"
            ;;
        200) break ;;
        *) kq_fail "answer $code before the first success: $(cat "$BATS_TEST_TMPDIR/early.body")" ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || kq_fail "no success within 60 s: $seen"
        sleep 0.05
    done
    echo "answers while starting:$seen"
    BODY=$(cat "$BATS_TEST_TMPDIR/early.body")
    jcheck "d['version'] == 2"
    cmd_wait_ready main 30
}
