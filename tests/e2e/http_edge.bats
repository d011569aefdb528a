#!/usr/bin/env bats
# http_edge.bats — the HTTP edge of kcqrs-commands and kcqrs-query against
# exact bytes (tests/tools/kq_rawhttp): issue #19 items 1-5, each defect as its
# reproduction with the fixed behaviour asserted. Every error is a JSON error
# (DESIGN.md section 8) answered before the connection closes; a refused
# request appends nothing to Kafka.
#
# One kcqrs-commands ("edge": header deadline 2 s, at most 16 connections per
# client address) and one kcqrs-query on an empty read model serve the file.
# CORS: the command service allows one browser origin, the query API any.

load helpers
load commands_helpers
load workflows_helpers
load http_helpers

HEADER_TIMEOUT_MS=2000
PER_IP=16
ORIGIN=http://console.example:8081

setup_file() {
    wf_make_keys
    KCQRS_CORS_ORIGINS="$ORIGIN, https://other.example" \
        KCQRS_HTTP_HEADER_TIMEOUT_MS=$HEADER_TIMEOUT_MS KCQRS_HTTP_MAX_PER_IP=$PER_IP cmd_start edge
    local port
    port=$(kq_free_port)
    echo "$port" >"$BATS_FILE_TMPDIR/query.port"
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    KCQRS_CORS_ORIGINS='*' KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        kq_bg "$BATS_FILE_TMPDIR/query.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/query.pid"
    kq_wait_port "$port" 30
}

teardown_file() {
    local rc=0
    if [[ -f "$BATS_FILE_TMPDIR/query.pid" ]]; then
        kill -0 "$(cat "$BATS_FILE_TMPDIR/query.pid")" 2>/dev/null || {
            echo "kcqrs-query died; its log:" >&2
            tail -n 40 "$BATS_FILE_TMPDIR/query.log" >&2
            rc=1
        }
        kq_stop "$(cat "$BATS_FILE_TMPDIR/query.pid")" 10
    fi
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$BATS_FILE_TMPDIR/query.log" 2>/dev/null; then
        echo "kcqrs-query: sanitizer report:" >&2
        cat "$BATS_FILE_TMPDIR/query.log" >&2
        rc=1
    fi
    cmd_stop_all || rc=1
    return $rc
}

setup() {
    cmd_use edge
    EDGE=$(cat "$BATS_FILE_TMPDIR/edge.port")
    QPORT=$(cat "$BATS_FILE_TMPDIR/query.port")
}

# A request head with the writer key: auth_head METHOD TARGET [EXTRA_HEADER_LINES]
auth_head() {
    printf '%s %s HTTP/1.1\\r\\nHost: edge\\r\\nAuthorization: Bearer %s\\r\\n%s' \
        "$1" "$2" "$KQ_KEY_WRITER" "${3:-}"
}

# A complete JSON request with the writer key: json_req METHOD TARGET BODY
json_req() {
    printf '%sContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s' \
        "$(auth_head "$1" "$2")" "${#3}" "$3"
}

# ------------------------------------------------------------------ controls

@test "controls: keep-alive answers pipelined requests in order and stays open; Connection: close closes" {
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: edge\r\n\r\nGET /health HTTP/1.1\r\nHost: edge\r\n\r\n' \
        --wait-ms 500
    raw_check 200,200 open
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n'
    raw_check 200 closed
    # HTTP/1.0 needs no Host
    raw "$EDGE" 'GET /health HTTP/1.0\r\n\r\n'
    raw_check 200 closed
    # a request sent slowly but within the header deadline is served
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n' --slow 1:10
    raw_check 200 closed
}

# ------------------------------------------------------------------ item 1

@test "slow header bytes: 408 JSON at the absolute header deadline, then closed (#19 item 1)" {
    # one byte every 100 ms: each byte is far within any idle timeout, the head
    # would take 13 s to arrive; the deadline counts from the first byte
    local pad
    pad=$(printf 'a%.0s' $(seq 1 100))
    raw "$EDGE" "GET /health HTTP/1.1\\r\\nHost: edge\\r\\nX-Pad: $pad\\r\\n\\r\\n" --slow 1:100 \
        --wait-ms 1000
    raw_check 408 closed
    [[ $RAW_FIRST_MS -ge $((HEADER_TIMEOUT_MS - 200)) && $RAW_FIRST_MS -le $((HEADER_TIMEOUT_MS + 2500)) ]] ||
        kq_fail "408 after $RAW_FIRST_MS ms; the header deadline is $HEADER_TIMEOUT_MS ms"
    [[ $RAW_SENT -lt 60 ]] || kq_fail "the server read $RAW_SENT slow bytes before closing"
    # a connection that never sends a byte is closed at the deadline too
    raw "$EDGE" "" --wait-ms $((HEADER_TIMEOUT_MS + 3000))
    [[ "$RAW_CLOSE" != open ]] || kq_fail "a silent connection outlived the header deadline"
}

# ------------------------------------------------------------------ item 2

# endless_webhook STATUS FIRST REPEAT_FILE: a chunked POST to a workflow's
# webhook (with its secret) whose body starts with FIRST and then repeats
# REPEAT_FILE's bytes without end (up to 64 MiB). The server must answer
# STATUS (a JSON error) and close after bounded bytes; nothing is appended.
endless_webhook() {
    local wf before
    wf=$(wf_new_id)
    wf_create "$wf"
    before=$(all_ends_sum)
    raw "$EDGE" "POST /hooks/$wf HTTP/1.1\\r\\nHost: edge\\r\\nX-Webhook-Secret: $WF_SECRET\\r\\nContent-Type: application/json\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n$2" \
        --repeat "$3" --max-bytes $((64 * 1024 * 1024))
    raw_check "$1" closed
    [[ $RAW_SENT -lt $((16 * 1024 * 1024)) ]] ||
        kq_fail "the server took $RAW_SENT bytes of an endless body without cutting it off"
    assert_all_unchanged "$before"
}

@test "endless chunk extension on a webhook: 400 JSON after bounded bytes, closed (#19 item 2)" {
    # "1;" then extension bytes forever: one chunk-size line that never ends
    printf 'x%.0s' $(seq 1 1024) >"$BATS_TEST_TMPDIR/ext"
    endless_webhook 400 '1;' "$BATS_TEST_TMPDIR/ext"
}

@test "endless small chunks with extensions on a webhook: 413 JSON after bounded bytes, closed (#19 item 2)" {
    # each chunk: 1 byte of payload behind a 200-byte extension; the payload
    # stays far below the body cap, the bytes on the wire do not
    printf '1;ext=%s\\r\\na\\r\\n' "$(printf 'x%.0s' $(seq 1 200))" >"$BATS_TEST_TMPDIR/chunk"
    endless_webhook 413 '' "$BATS_TEST_TMPDIR/chunk"
}

# ------------------------------------------------------------------ item 3

@test "%00 and bad percent escapes in paths and queries: 400 JSON, nothing appended (#19 item 3)" {
    local id wf before
    id=$(new_id)
    create_resource "$id"
    wf=$(wf_new_id)
    wf_create "$wf"
    before=$(all_ends_sum)
    raw "$EDGE" "$(json_req PUT "/api/v1/resources/$id%00zzz" '{"name":"evil"}')"
    raw_check 400 any
    raw "$EDGE" "$(auth_head DELETE "/api/v1/resources/$id%00x")\\r\\n"
    raw_check 400 any
    raw "$EDGE" "POST /hooks/$wf%00x HTTP/1.1\\r\\nHost: edge\\r\\nX-Webhook-Secret: $WF_SECRET\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n{}"
    raw_check 400 any
    local bad
    for bad in "$id%zz" "$id%4" "$id%" "$id%0a" "$id%2"; do
        raw "$EDGE" "$(json_req PUT "/api/v1/resources/$bad" '{"name":"evil"}')"
        raw_check 400 any
    done
    for bad in 'x=%00' 'x=a%00b' 'x=%g0' 'x=%' '%00=1'; do
        raw "$EDGE" "$(json_req POST "/api/v1/resources?$bad" "{\"id\":\"$id-q\",\"name\":\"evil\"}")"
        raw_check 400 any
    done
    # a NUL inside a JSON id is refused by the body's rules
    req POST /api/v1/resources '{"id":"a\u0000b","name":"evil"}'
    assert_error 400
    assert_all_unchanged "$before"
    [[ "$(versions_of "$id" | wc -l)" == 1 ]] || kq_fail "resource $id changed: $(versions_of "$id")"
    # the same raw request without the NUL does append (the check above can fail)
    raw "$EDGE" "$(json_req PUT "/api/v1/resources/$id" '{"name":"fine"}')"
    raw_check 200 any
    [[ "$(all_ends_sum)" != "$before" ]] || kq_fail "a valid PUT appended nothing"
}

@test "%00 and bad escapes on kcqrs-query: 400 JSON; the plain paths answer (#19 item 3)" {
    local auth="Authorization: Bearer $KQ_KEY_READER"
    local t
    for t in '/api/v1/status%00.json' '/api/v1/resources/x%00y' '/api/v1/resources?status=%00' \
        '/api/v1/resources?status=active%zz' '/api/v1/resources?limit=1%00' '/api/v1/%zz'; do
        raw "$QPORT" "GET $t HTTP/1.1\\r\\nHost: q\\r\\n$auth\\r\\n\\r\\n"
        raw_check 400 any
    done
    # the status endpoint exists: without the NUL it is not a 400
    raw "$QPORT" "GET /api/v1/status HTTP/1.1\\r\\nHost: q\\r\\n$auth\\r\\nConnection: close\\r\\n\\r\\n"
    [[ "$(head -c 12 "$RAW_OUT")" =~ ^HTTP/1\.1\ (200|503)$ ]] ||
        kq_fail "GET /api/v1/status: $(head -c 100 "$RAW_OUT")"
}

# ------------------------------------------------------------------ item 4

@test "Transfer-Encoding with Content-Length: 400, closed, the smuggled request not run (#19 item 4)" {
    local before sid smuggled outer
    before=$(all_ends_sum)
    sid="smuggled-$RANDOM$RANDOM"
    smuggled=$(json_req POST /api/v1/resources "{\"id\":\"$sid\",\"name\":\"smuggled\"}")
    # Content-Length covers the smuggled request (a front proxy sees one request);
    # chunked framing ends after "0\r\n\r\n" and would run the second one
    local tail_bytes
    tail_bytes=$(printf '0\r\n\r\n%b' "$smuggled" | wc -c)
    outer="$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nContent-Length: $tail_bytes\\r\\nTransfer-Encoding: chunked\\r\\n")\\r\\n0\\r\\n\\r\\n$smuggled"
    raw "$EDGE" "$outer"
    raw_check 400 closed
    # and with the headers the other way round
    outer="$(auth_head POST /api/v1/resources "Transfer-Encoding: chunked\\r\\nContent-Type: application/json\\r\\nContent-Length: $tail_bytes\\r\\n")\\r\\n0\\r\\n\\r\\n$smuggled"
    raw "$EDGE" "$outer"
    raw_check 400 closed
    assert_all_unchanged "$before"
    ! dump_topic | grep -q "$sid" || kq_fail "the smuggled create of $sid is in the log"
}

@test "two Content-Length headers: 400, closed, nothing appended (#19 item 4)" {
    local before id body
    before=$(all_ends_sum)
    id=$(new_id)
    body="{\"id\":\"$id\",\"name\":\"two lengths\"}"
    raw "$EDGE" "$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nContent-Length: ${#body}\\r\\nContent-Length: 5\\r\\n")\\r\\n$body"
    raw_check 400 closed
    raw "$EDGE" "$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nContent-Length: ${#body}\\r\\nContent-Length: ${#body}\\r\\n")\\r\\n$body"
    raw_check 400 closed
    raw "$EDGE" "$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nContent-Length: ${#body}, ${#body}\\r\\n")\\r\\n$body"
    raw_check 400 closed
    assert_all_unchanged "$before"
}

@test "Host: missing or twice on HTTP/1.1 is 400 JSON (#19 item 4)" {
    raw "$EDGE" 'GET /health HTTP/1.1\r\n\r\n'
    raw_check 400 closed
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
    raw_check 400 closed
    local before id body
    before=$(all_ends_sum)
    id=$(new_id)
    body="{\"id\":\"$id\",\"name\":\"no host\"}"
    raw "$EDGE" "POST /api/v1/resources HTTP/1.1\\r\\nAuthorization: Bearer $KQ_KEY_WRITER\\r\\nContent-Type: application/json\\r\\nContent-Length: ${#body}\\r\\n\\r\\n$body"
    raw_check 400 closed
    assert_all_unchanged "$before"
}

@test "Transfer-Encoding gzip, xchunked, 'gzip, chunked': 501 JSON; chunked on HTTP/1.0: 400 (#19 item 4)" {
    local te
    for te in gzip xchunked 'gzip, chunked' 'chunked, chunked'; do
        raw "$EDGE" "$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nTransfer-Encoding: $te\\r\\n")\\r\\n0\\r\\n\\r\\n"
        raw_check 501 closed
    done
    raw "$EDGE" "POST /hooks/x HTTP/1.0\\r\\nContent-Type: application/json\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n2\\r\\n{}\\r\\n0\\r\\n\\r\\n"
    raw_check 400 closed
}

# ------------------------------------------------------------------ item 5

@test "malformed request lines: 400 JSON before the close (#19 item 5)" {
    local line
    for line in 'GARBAGE\r\n\r\n' 'GET /health\r\n\r\n' 'GET  /health HTTP/1.1\r\nHost: e\r\n\r\n' \
        'GET health HTTP/1.1\r\nHost: e\r\n\r\n' 'GET http://edge/health HTTP/1.1\r\nHost: e\r\n\r\n' \
        'GET /health HTTP/1.1\nHost: e\n\n' 'G(T /health HTTP/1.1\r\nHost: e\r\n\r\n' \
        'GET /health HTTP/x.y\r\nHost: e\r\n\r\n' 'GET /health HTTP/1.1\r\nHost: e\r\nBad Name: v\r\n\r\n' \
        'GET /health HTTP/1.1\r\nHost: e\r\nX-A : v\r\n\r\n' 'GET /health HTTP/1.1\r\nHost: e\r\nX-A: v\r\n folded\r\n\r\n' \
        'GET /health HTTP/1.1\r\nHost: e\r\nX-A: a\x01b\r\n\r\n'; do
        raw "$EDGE" "$line"
        raw_check 400 closed
    done
}

@test "URL over 8 KiB: 414 JSON; ~1,000 query parameters in a 7 KB URL: 414 JSON (#19 item 5)" {
    local long many
    long="/health?x=$(printf 'a%.0s' $(seq 1 9000))"
    raw "$EDGE" "GET $long HTTP/1.1\\r\\nHost: e\\r\\n\\r\\n"
    raw_check 414 closed
    many="/api/v1/resources?$(seq 1 1000 | sed 's/.*/p&=1/' | paste -sd'&')"
    [[ ${#many} -lt 8192 ]]
    raw "$QPORT" "GET $many HTTP/1.1\\r\\nHost: q\\r\\nAuthorization: Bearer $KQ_KEY_READER\\r\\n\\r\\n"
    raw_check 414 closed
    # the same on kcqrs-commands
    raw "$EDGE" "GET ${many/\/api\/v1\/resources/\/health} HTTP/1.1\\r\\nHost: e\\r\\n\\r\\n"
    raw_check 414 closed
}

@test "header section over 16 KiB or over 64 fields: 431 JSON (#19 item 5)" {
    local big fields
    big=$(for i in $(seq 1 20); do printf 'X-Big-%d: %s\\r\\n' "$i" "$(printf 'b%.0s' $(seq 1 1000))"; done)
    raw "$EDGE" "GET /health HTTP/1.1\\r\\nHost: e\\r\\n$big\\r\\n"
    raw_check 431 closed
    fields=$(for i in $(seq 1 100); do printf 'X-F%d: v\\r\\n' "$i"; done)
    raw "$EDGE" "GET /health HTTP/1.1\\r\\nHost: e\\r\\n$fields\\r\\n"
    raw_check 431 closed
}

@test "HTTP/2.0 and HTTP/1.2 request lines: 505 JSON (#19 item 5)" {
    raw "$EDGE" 'GET /health HTTP/2.0\r\nHost: e\r\n\r\n'
    raw_check 505 closed
    raw "$EDGE" 'GET /health HTTP/1.2\r\nHost: e\r\n\r\n'
    raw_check 505 closed
}

@test "bad Content-Length (-5, abc, +5, 2^64, empty): one 400 JSON answer, nothing appended (#19 item 5)" {
    local before cl
    before=$(all_ends_sum)
    for cl in -5 abc +5 18446744073709551616 99999999999999999999999 '' '1 2' 0x10; do
        raw "$EDGE" "$(auth_head POST /api/v1/resources "Content-Type: application/json\\r\\nContent-Length: $cl\\r\\n")\\r\\n{\"name\":\"x\"}"
        raw_check 400 closed
    done
    assert_all_unchanged "$before"
}

@test "a client over the per-address limit gets 503 JSON with Retry-After, not a reset (#19 item 5, #15 item 3)" {
    # PER_IP connections from 127.0.0.9 held open, then (once the server has
    # accepted them: 0.5 s, well inside the 2 s head deadline) one more from it
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: e\r\n\r\n' --from 127.0.0.9 --hold "$PER_IP" \
        --hold-ms 500
    raw_check 503 closed
    [[ "$(raw_hdr Retry-After)" =~ ^[1-9][0-9]*$ ]] ||
        kq_fail "Retry-After: '$(raw_hdr Retry-After)'"
    [[ "$RAW_HELD_OPEN" == "$PER_IP" ]] ||
        kq_fail "only $RAW_HELD_OPEN of the $PER_IP connections under the limit were left open"
    # another address is not affected, and once they are gone 127.0.0.9 is served again
    raw "$EDGE" 'GET /health HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n' --from 127.0.0.10
    raw_check 200 closed
    local i
    for i in $(seq 1 50); do
        raw "$EDGE" 'GET /health HTTP/1.0\r\n\r\n' --from 127.0.0.9
        [[ "$(head -c 12 "$RAW_OUT")" =~ ^HTTP/1\.[01]\ 200$ ]] && break
        sleep 0.2
    done
    raw_check 200 closed
}

# ------------------------------------------------------------------ CORS

# cors_req ARGS...: curl -i; the answer's head lower-cased in $head, the status in $code.
cors_req() {
    run curl -sS -i --max-time 10 "$@"
    [ "$status" -eq 0 ]
    head=$(printf '%s' "$output" | tr -d '\r' | sed '/^$/q' | tr 'A-Z' 'a-z')
    code=$(printf '%s\n' "$head" | awk 'NR == 1 {print $2}')
}

@test "CORS preflight from an allowed origin: 204 with the path's methods, the headers, Max-Age" {
    cors_req -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT' \
        -H 'Access-Control-Request-Headers: authorization, if-match, content-type' \
        "http://127.0.0.1:$EDGE/api/v1/resources/r-1"
    [ "$code" = 204 ]
    grep -qx "access-control-allow-origin: $ORIGIN" <<<"$head"
    grep -qx 'vary: origin' <<<"$head"
    methods=$(grep '^access-control-allow-methods:' <<<"$head")
    [[ "$methods" == *put* && "$methods" == *delete* ]]
    [[ "$methods" != *post* && "$methods" != *get* ]] # POST: the collection; GET: kcqrs-query
    allowh=$(grep '^access-control-allow-headers:' <<<"$head")
    for h in authorization if-match content-type idempotency-key x-correlation-id; do
        [[ "$allowh" == *"$h"* ]]
    done
    grep -qx 'access-control-max-age: 600' <<<"$head"
}

@test "CORS preflight from another origin: 403 problem+json, no Allow-Origin; unknown path 404" {
    cors_req -X OPTIONS -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST' \
        "http://127.0.0.1:$EDGE/api/v1/resources"
    [ "$code" = 403 ]
    grep -q '^content-type: application/problem+json' <<<"$head"
    ! grep -q '^access-control-allow-origin' <<<"$head" || false
    [[ "$output" == *'"code":"cors_origin_denied"'* ]]
    cors_req -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: GET' \
        "http://127.0.0.1:$EDGE/api/v1/nothing-here"
    [ "$code" = 404 ]
}

@test "CORS on answers: an allowed origin sees Allow-Origin and the exposed headers, also on errors" {
    cors_req -H "Origin: $ORIGIN" "http://127.0.0.1:$EDGE/api/v1/resources/r-1" -X DELETE
    [ "$code" = 401 ] # no key: the browser can still read the problem
    grep -qx "access-control-allow-origin: $ORIGIN" <<<"$head"
    exposed=$(grep '^access-control-expose-headers:' <<<"$head")
    for h in etag location retry-after x-consistency-token; do
        [[ "$exposed" == *"$h"* ]]
    done
    cors_req -H 'Origin: https://OTHER.example' "http://127.0.0.1:$EDGE/api/v1/resources/r-1" -X DELETE
    grep -qx 'access-control-allow-origin: https://other.example' <<<"$head"
    # Another origin or no Origin at all: no CORS headers.
    cors_req -H 'Origin: http://console.example:8082' "http://127.0.0.1:$EDGE/api/v1/resources/r-1" -X DELETE
    [ "$code" = 401 ]
    ! grep -q '^access-control-' <<<"$head" || false
    cors_req "http://127.0.0.1:$EDGE/api/v1/resources/r-1" -X DELETE
    ! grep -q '^access-control-' <<<"$head"
}

@test "CORS '*' on kcqrs-query: any origin, Allow-Origin *, preflight 204" {
    cors_req -H 'Origin: http://anything.example' "http://127.0.0.1:$QPORT/api/v1/resources"
    grep -qx 'access-control-allow-origin: \*' <<<"$head"
    cors_req -X OPTIONS -H 'Origin: http://anything.example' \
        -H 'Access-Control-Request-Method: GET' "http://127.0.0.1:$QPORT/api/v1/resources"
    [ "$code" = 204 ]
    grep -q '^access-control-allow-methods: get' <<<"$head"
}

@test "CORS: an origin that is not scheme://host[:port] refuses the start with a clear message" {
    for bad in 'ftp://x.example' 'http://x.example/' 'http://x.example:port' 'x.example'; do
        run env KCQRS_CORS_ORIGINS="$bad" KCQRS_QUERY_ADDR="127.0.0.1:$(kq_free_port)" \
            KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" timeout 20 "$KCQRS_BIN/kcqrs-query"
        [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
        [[ "$output" == *"CORS origins: '$bad' is not an origin"* ]]
    done
}
