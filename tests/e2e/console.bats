#!/usr/bin/env bats
# tests/e2e/console.bats — the web console on kcqrs-query (/console): its
# routes over HTTP (assets with their Content-Security-Policy, settings,
# whoami, a missing file), the snapshots and the results of kcqrs-replay runs,
# then the browser flow of issue 17 in headless
# Chromium driven by Playwright (tests/browser/console_flow.py) against
# kcqrs-commands (CORS allowing the query API's origin), kcqrs-projector,
# kcqrs-query, kcqrs-worker and a local receiver. Screenshots, axe-core
# reports and exports go to build/test-artifacts/console/. In the Makefile's
# E2E_PLAIN_ONLY (it drives a browser).

load helpers
load commands_helpers
load projector_helpers
load worker_helpers

setup_file() {
    # the tool this file needs, installed if missing; waits if another run installs it
    "$KQ_REPO/ops/install-test-tools.sh" browser >"$BATS_FILE_TMPDIR/tools.log" 2>&1 ||
        kq_fail "ops/install-test-tools.sh browser failed: $(tail -20 "$BATS_FILE_TMPDIR/tools.log")" || return 1
    kq_fresh_db console
    cmd_make_keys
    wk_make_key
    kq_tool kq_topics create >/dev/null
    local qport
    qport=$(kq_free_port)
    echo "http://127.0.0.1:$qport" >"$BATS_FILE_TMPDIR/qry.url"
    export KCQRS_CORS_ORIGINS="http://127.0.0.1:$qport" KCQRS_WORKER_ALLOW_PRIVATE=1
    cmd_start c1
    echo "$CMD_URL" >"$BATS_FILE_TMPDIR/cmd_url"
    proj_start
    KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_QUERY_ADDR="127.0.0.1:$qport" \
        KCQRS_CONSOLE_COMMANDS_URL="$CMD_URL/" \
        kq_bg "$BATS_FILE_TMPDIR/qry.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/qry.pid"
    kq_wait_http "http://127.0.0.1:$qport/ready" 60
    wk_start w1
    rcv_start hook 200
}

teardown_file() {
    local rc=0
    wk_stop_all || rc=1
    [[ -f "$BATS_FILE_TMPDIR/qry.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    proj_stop || rc=1
    proj_no_sanitizer_report || rc=1
    cmd_stop_all || rc=1
    rcv_stop_all
    if grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$BATS_FILE_TMPDIR/qry.log"; then
        rc=1
    fi
    return $rc
}

setup() {
    QRY=$(cat "$BATS_FILE_TMPDIR/qry.url")
    CMD_URL=$(cat "$BATS_FILE_TMPDIR/cmd_url")
}

# get PATH [CURL_ARGS...]: GET on the query API; sets CODE, BODY, HDRS.
get() {
    local path="$1"
    shift
    HDRS="$BATS_TEST_TMPDIR/hdrs"
    BODY=$(curl -s --max-time 10 -D "$HDRS" -o - -w '\n%{http_code}' "$@" "$QRY$path")
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
    echo "GET $path -> $CODE $BODY" | head -c 600
}

@test "/console: the page and its assets, each with its type and a policy naming the commands origin" {
    get /console
    [[ "$CODE" == 200 ]]
    [[ "$(hdr Content-Type)" == "text/html; charset=utf-8" ]]
    [[ "$BODY" == *'<script type="module" src="/console/app.js">'* ]]
    csp=$(hdr Content-Security-Policy)
    [[ "$csp" == *"script-src 'self';"* && "$csp" == *"connect-src 'self' $CMD_URL;"* ]]
    [[ "$(hdr X-Content-Type-Options)" == nosniff ]]
    for f in app.js api.js dom.js status.js resources.js workflows.js runs.js audit.js readmodels.js; do
        curl -s --max-time 10 -D "$HDRS" -o "$BATS_TEST_TMPDIR/$f" "$QRY/console/$f"
        [[ "$(hdr Content-Type)" == "text/javascript; charset=utf-8" ]]
        # byte for byte the file of the source tree
        cmp "$BATS_TEST_TMPDIR/$f" "$KQ_REPO/query-api/console/$f"
    done
    get /console/console.css
    [[ "$CODE" == 200 && "$(hdr Content-Type)" == "text/css; charset=utf-8" ]]
}

@test "/console/config.json names the commands API; a missing file is a 404 problem" {
    get /console/config.json
    [[ "$CODE" == 200 ]]
    jcheck "d == {'commands_url': '$CMD_URL'}"
    get /console/nope.js
    [[ "$CODE" == 404 ]]
    get /console/..%2Fqry_api.c
    [[ "$CODE" == 404 ]]
    [[ "$BODY" != *"#include"* ]]
}

@test "/api/v1/whoami: the key's name and roles; no key or a wrong one is 401" {
    get /api/v1/whoami -H "Authorization: Bearer $KQ_KEY_READER"
    [[ "$CODE" == 200 ]]
    jcheck "d == {'actor': 'e2e-reader', 'roles': ['reader']}"
    [[ "$(hdr Cache-Control)" == no-store ]]
    get /api/v1/whoami -H "Authorization: Bearer $KQ_KEY_ADMIN"
    jcheck "d == {'actor': 'e2e-admin', 'roles': ['admin']}"
    get /api/v1/whoami
    [[ "$CODE" == 401 ]]
    get /api/v1/whoami -H "Authorization: Bearer not-a-key"
    [[ "$CODE" == 401 ]]
}

@test "a bad KCQRS_CONSOLE_COMMANDS_URL stops kcqrs-query at start (exit 2) with a message" {
    local url
    for url in "ftp://x" "http://" "http://a b" $'http://a\r\nX: y' "http://h/<script>"; do
        run env KCQRS_CONSOLE_COMMANDS_URL="$url" KCQRS_QUERY_ADDR=127.0.0.1:0 \
            KCQRS_LMDB_DIR="$BATS_TEST_TMPDIR" timeout 10 "$KCQRS_BIN/kcqrs-query"
        echo "$url -> $status: $output"
        [[ "$status" == 2 && "$output" == *KCQRS_CONSOLE_COMMANDS_URL* ]]
    done
}

@test "/api/v1/snapshots: none is [], then the one kcqrs-replay built, with its time and positions" {
    get /api/v1/snapshots -H "Authorization: Bearer $KQ_KEY_READER"
    [[ "$CODE" == 200 ]]
    jcheck "d == {'items': []}"
    get /api/v1/snapshots
    [[ "$CODE" == 401 ]]
    req POST /api/v1/resources '{"name":"before the snapshot"}'
    [[ "$CODE" == 201 ]]
    # now, after the 201: the event's time and its Kafka timestamp are both earlier
    run env KCQRS_LMDB_DIR="$PROJ_LMDB" timeout 120 "$KCQRS_BIN/kcqrs-replay" rebuild \
        --target lmdb --until "@$(date +%s%6N)" --name console_snap
    echo "$output" | tail -5
    [[ "$status" == 0 ]]
    # a build in progress is not listed
    mkdir -p "$PROJ_LMDB/snapshots/other.building"
    get /api/v1/snapshots -H "Authorization: Bearer $KQ_KEY_READER"
    [[ "$CODE" == 200 ]]
    jcheck "[s['name'] for s in d['items']] == ['console_snap']"
    jcheck "sum(d['items'][0]['positions'].values()) >= 1 and d['items'][0]['built_at'].endswith('Z')"
}

@test "/api/v1/replay/runs: every kcqrs-replay run's result, newest first; bad parameters are 400" {
    # the snapshot of the test before is recorded; now a verify of both read models
    run env KCQRS_LMDB_DIR="$PROJ_LMDB" timeout 120 "$KCQRS_BIN/kcqrs-replay" verify --target all
    echo "$output" | tail -5
    [[ "$status" == 0 ]]
    get /api/v1/replay/runs -H "Authorization: Bearer $KQ_KEY_READER"
    [[ "$CODE" == 200 ]]
    jcheck "[(r['kind'], r['target'], r['name'], r['outcome'], r['differences']) for r in d['items']] == [
        ('verify', 'pg', None, 'succeeded', 0), ('verify', 'lmdb', None, 'succeeded', 0),
        ('snapshot', 'lmdb', 'console_snap', 'succeeded', None)]"
    jcheck "all(r['events'] >= 1 and r['started_at'] <= r['finished_at'] and r['finished_at'].endswith('Z')
                and r['detail'] is None for r in d['items']) and d['items'][0]['id'] > d['items'][2]['id']"
    get "/api/v1/replay/runs?limit=1" -H "Authorization: Bearer $KQ_KEY_READER"
    jcheck "len(d['items']) == 1 and d['items'][0]['kind'] == 'verify'"
    # a run that fails is recorded with its reason: another holds the rebuild lock
    run flock "$PROJ_LMDB/readmodel.rebuild.lock" env KCQRS_LMDB_DIR="$PROJ_LMDB" timeout 120 \
        "$KCQRS_BIN/kcqrs-replay" verify --target lmdb
    echo "$output" | tail -3
    [[ "$status" == 3 ]]
    get "/api/v1/replay/runs?limit=1" -H "Authorization: Bearer $KQ_KEY_READER"
    jcheck "d['items'][0]['outcome'] == 'failed' and d['items'][0]['kind'] == 'verify' and 'busy' in d['items'][0]['detail']"
    for q in "limit=0" "limit=201" "limit=x" "limit=1&limit=2" "other=1"; do
        get "/api/v1/replay/runs?$q" -H "Authorization: Bearer $KQ_KEY_READER"
        [[ "$CODE" == 400 ]]
        jcheck "d['code'] == 'validation_failed' and len(d['errors']) >= 1"
    done
    get /api/v1/replay/runs
    [[ "$CODE" == 401 ]]
}

@test "browser: sign in, status, resources (create, list, stale edit), workflow run, audit, sign out" {
    local art="$KQ_REPO/build/test-artifacts/console"
    rm -rf "$art"
    mkdir -p "$art"
    CONSOLE_URL="$QRY/console" KEY_ADMIN="$KQ_KEY_ADMIN" KEY_WRITER="$KQ_KEY_WRITER" \
        COMMANDS_URL="$CMD_URL" RECEIVER_URL="$(rcv_url hook)" ARTIFACTS="$art" \
        AXE_JS="$KQ_REPO/tests/browser/node_modules/axe-core/axe.min.js" \
        CHROMIUM="${KQ_CHROMIUM:-/usr/lib/chromium/chromium}" \
        run timeout 120 "$KQ_REPO/.cache/browser-venv/bin/python" "$KQ_REPO/tests/browser/console_flow.py"
    echo "$output"
    [[ "$status" == 0 ]]
    [[ "$output" == *"steps passed"* ]]
    ls "$art"/*.png
    [[ $(find "$art" -name '*.png' | wc -l) -ge 6 ]]
}
