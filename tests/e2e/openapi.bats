#!/usr/bin/env bats
# tests/e2e/openapi.bats — the API contract (commands/openapi.json,
# query-api/openapi.json, lib/openapi-admin.json) against the running chain
# kcqrs-commands -> Kafka -> kcqrs-projector -> kcqrs-query:
#   - every service serves its document at GET /openapi.json without a key,
#     byte for byte the file of the repository;
#   - schemathesis (pinned; a venv under .cache/ made by `ops/install-test-tools.sh openapi`)
#     sends generated requests, valid and invalid, to every operation of each
#     API with a bounded number of examples and a fixed seed
#     (KQ_OPENAPI_SEED changes it, KQ_OPENAPI_EXAMPLES the bound): no 5xx, and
#     every answer's status, content type, headers and body are the ones the
#     document gives;
#   - a client generated from the documents by openapi-python-client creates a
#     resource and reads it back.
# In the Makefile's E2E_PLAIN_ONLY: it runs once, not again under the sanitizers.

load helpers
load commands_helpers

OPENAPI_VENV="$KQ_REPO/.cache/openapi-venv"

setup_file() {
    # the tool this file needs, installed if missing; waits if another run installs it
    "$KQ_REPO/ops/install-test-tools.sh" openapi >"$BATS_FILE_TMPDIR/tools.log" 2>&1 ||
        kq_fail "ops/install-test-tools.sh openapi failed: $(tail -20 "$BATS_FILE_TMPDIR/tools.log")" || return 1
    [[ -x "$OPENAPI_VENV/bin/schemathesis" && -x "$OPENAPI_VENV/bin/openapi-python-client" ]] ||
        kq_fail "no $OPENAPI_VENV: run ops/install-test-tools.sh openapi"
    kq_fresh_db openapi
    # topics of this run only: the examples' ids are created anew even on servers kept
    # from a run before (KQ_E2E_BROKERS)
    export KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX.$(date +%s)"
    cmd_make_keys
    export KQ_KEY_AUDITOR
    KQ_KEY_AUDITOR=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-auditor --roles auditor \
        --file "$KCQRS_KEYS_FILE")
    cmd_start cmd
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-read"
    local port
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/proj.url"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_PROJECTOR_ADDR="127.0.0.1:$port" \
        kq_bg "$BATS_FILE_TMPDIR/proj.log" "$KCQRS_BIN/kcqrs-projector" >"$BATS_FILE_TMPDIR/proj.pid"
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/q.url"
    KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-read" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        KCQRS_QUERY_WAIT_MS=3000 \
        kq_bg "$BATS_FILE_TMPDIR/q.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/q.pid"
    kq_wait_http "http://127.0.0.1:$port/ready" 60
    kq_wait_http "$(cat "$BATS_FILE_TMPDIR/proj.url")/ready" 60
}

setup() {
    cmd_use cmd
    QURL=$(cat "$BATS_FILE_TMPDIR/q.url")
}

teardown_file() {
    local n rc=0
    for n in q proj; do
        [[ -f "$BATS_FILE_TMPDIR/$n.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/$n.pid")" 10
    done
    cmd_stop_all || rc=1
    for n in q proj; do
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
            "$BATS_FILE_TMPDIR/$n.log" 2>/dev/null; then
            echo "$n: sanitizer report:" >&2
            cat "$BATS_FILE_TMPDIR/$n.log" >&2
            rc=1
        fi
    done
    return $rc
}

# st_run NAME DOC URL OPERATIONS [CURL-STYLE -H ARGS...]: schemathesis against URL with DOC
# and tests/e2e/schemathesis.toml, as admin (every role); its output in
# $BATS_FILE_TMPDIR/st-NAME.out (the tail printed on failure). Fails unless it
# passed and tested OPERATIONS operations.
st_run() {
    local name="$1" doc="$2" url="$3" nops="$4" rc=0
    shift 4
    local out="$BATS_FILE_TMPDIR/st-$name.out" ex=()
    [[ -n "${KQ_OPENAPI_EXAMPLES:-}" ]] && ex=(--max-examples "$KQ_OPENAPI_EXAMPLES")
    # from the file's temporary directory: schemathesis keeps a cache (.schemathesis/) there
    (cd "$BATS_FILE_TMPDIR" &&
        "$OPENAPI_VENV/bin/schemathesis" --config-file "$KQ_REPO/tests/e2e/schemathesis.toml" \
            run "$doc" --url "$url" -H "Authorization: Bearer $KQ_KEY_ADMIN" "$@" "${ex[@]}" \
            --seed "${KQ_OPENAPI_SEED:-1}" --workers 2 --request-timeout 10 --no-color) \
        >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 200 "$out" >&2
        return 1
    fi
    grep -E "^ +Tested: +$nops\$" "$out" ||
        kq_fail "expected $nops operations tested: $(grep -E 'Tested:' "$out")"
    grep -E "[0-9]+ generated, [0-9]+ passed" "$out"
}

@test "GET /openapi.json: each service serves its document without a key, as in the repository" {
    local name url doc
    for name in cmd q proj; do
        case $name in
        cmd) url=$CMD_URL doc=commands/openapi.json ;;
        q) url=$QURL doc=query-api/openapi.json ;;
        proj) url=$(cat "$BATS_FILE_TMPDIR/proj.url") doc=lib/openapi-admin.json ;;
        esac
        CODE=$(curl -sS -o "$BATS_TEST_TMPDIR/$name.json" -D "$BATS_TEST_TMPDIR/$name.h" \
            -w '%{http_code}' "$url/openapi.json")
        [[ "$CODE" == 200 ]] || kq_fail "$name: GET /openapi.json: $CODE"
        grep -qi '^content-type: application/json' "$BATS_TEST_TMPDIR/$name.h" ||
            kq_fail "$name: $(cat "$BATS_TEST_TMPDIR/$name.h")"
        cmp "$KQ_REPO/$doc" "$BATS_TEST_TMPDIR/$name.json" || kq_fail "$name: not $doc"
    done
    # the document is not a prefix match: another path is still 404 problem+json
    CODE=$(curl -sS -o /dev/null -D "$BATS_TEST_TMPDIR/x.h" -w '%{http_code}' "$QURL/openapi.yaml")
    [[ "$CODE" == 404 ]]
    grep -qi '^content-type: application/problem+json' "$BATS_TEST_TMPDIR/x.h"
}

@test "schemathesis: kcqrs-query answers as its document says (no 5xx, every answer conforms)" {
    # something to read, under the id the document's examples name: a resource, a
    # workflow (whose webhook secret the commands run below uses) and a run
    req POST /api/v1/resources '{"id":"example-1","name":"printer"}'
    [[ "$CODE" == 201 ]]
    req POST /api/v1/workflows '{"id":"example-1","name":"orders","secret":"example-secret",
        "actions":[{"type":"email","to":["ops@example.com"],"subject":"hi"}]}'
    [[ "$CODE" == 201 ]]
    req POST /api/v1/workflows/example-1/runs '{"order":1}'
    [[ "$CODE" == 202 ]]
    kq_wait_for 30 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' \
        -H 'Authorization: Bearer $KQ_KEY_READER' '$QURL/api/v1/runs/$(jf 'd["id"]')') == 200 ]]"
    # the event stream never ends by itself (stream.bats tests it): not fuzzed
    st_run query "$KQ_REPO/query-api/openapi.json" "$QURL" 22 \
        --exclude-path /api/v1/events/stream
}

@test "schemathesis: kcqrs-commands answers as its document says (no 5xx, every answer conforms)" {
    st_run commands "$KQ_REPO/commands/openapi.json" "$CMD_URL" 14 \
        -H "X-Webhook-Secret: example-secret"
}

@test "a client generated from the documents (openapi-python-client) creates a resource and reads it back" {
    local gen="$BATS_FILE_TMPDIR/gen"
    rm -rf "$gen"
    mkdir -p "$gen"
    printf 'post_hooks: []\n' >"$gen/config.yaml"
    (cd "$gen" &&
        "$OPENAPI_VENV/bin/openapi-python-client" generate --config config.yaml --meta none \
            --path "$KQ_REPO/commands/openapi.json" --output-path kcqrs_commands_client &&
        "$OPENAPI_VENV/bin/openapi-python-client" generate --config config.yaml --meta none \
            --path "$KQ_REPO/query-api/openapi.json" --output-path kcqrs_query_client) \
        >"$gen/generate.log" 2>&1 || { cat "$gen/generate.log" >&2; return 1; }
    PYTHONPATH="$gen" run "$OPENAPI_VENV/bin/python" "$KQ_REPO/tests/e2e/openapi_client.py" \
        "$CMD_URL" "$QURL" "$KQ_KEY_WRITER" "$KQ_KEY_READER" "oa-client-$RANDOM$RANDOM"
    echo "$output"
    [[ "$status" == 0 ]]
    [[ "${lines[-1]}" == "ok" ]]
}
