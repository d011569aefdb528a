#!/usr/bin/env bats
# workflows.bats — kcqrs-commands black-box for issue #6: workflow commands,
# manual triggers, webhooks and the worker's attempt endpoint over HTTP,
# checked against what the Kafka log holds (kq_offsets dump of the workflow
# and run topics). Every refusal checks that the end offsets of all three
# topics did not move (no event, not even an aborted transaction).
#
# One instance ("main") for the file, on the suite's broker, with this
# file's topic prefix; the last test restarts it (clean stop; SIGKILL;
# SIGKILL with the snapshot removed) and checks that the state came back
# from the snapshot and from the log.

load helpers
load commands_helpers
load workflows_helpers

setup_file() {
    wf_make_keys
    # every failed webhook of this file comes from 127.0.0.1: room for all of them (the
    # limit itself is tested on its own instance)
    export KCQRS_HOOK_FAIL_BURST=1000
    cmd_start main
}

teardown_file() {
    cmd_stop_all
}

setup() {
    cmd_use main
}

UUID4_RE='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

# ------------------------------------------------------------------ workflows

@test "workflow create: 201, Location, ETag, generated webhook_secret; WorkflowCreated in the log" {
    id=$(wf_new_id)
    req POST /api/v1/workflows "{\"id\":\"$id\",\"name\":\"Orders\",\"actions\":[$HTTP_ACTION,$MAIL_ACTION]}"
    [ "$CODE" = 201 ]
    jcheck "sorted(d) == ['consistency_token', 'id', 'version', 'webhook_secret'] and d['id'] == '$id' and d['version'] == 1"
    secret=$(jf 'd["webhook_secret"]')
    [[ "$secret" =~ ^[0-9a-f]{64}$ ]]
    [[ "$(hdr Location)" == */api/v1/workflows/$id ]]
    [ "$(hdr ETag)" = '"1"' ]
    [ "$(hdr X-Consistency-Token)" = "$(jf 'd["consistency_token"]')" ]

    run agg_types "$(wf_topic)" "$id"
    echo "$output"
    [ "$output" = "1 WorkflowCreated" ]
    BODY=$(agg_event "$(wf_topic)" "$id" 1)
    echo "$BODY"
    jcheck "d['aggregate_type'] == 'workflow' and d['actor'] == 'e2e-writer' and d['payload_type'] == 'WorkflowCreated'"
    # the secret is in the log only sealed (ev_secret.h): 29 bytes more than it, never plain
    jcheck "d['payload']['name'] == 'Orders' and d['payload'].get('enabled', True) is True and d['payload']['webhook_secret'] == '[sealed]'"
    jcheck "len(d['payload']['webhook_secret_sealed']) == 64 + 29 and '$secret' not in json.dumps(d)"
    jcheck "len(d['payload']['steps']) == 2"
    jcheck "d['payload']['steps'][0]['name'] == 'notify' and d['payload']['steps'][0]['action_type'] == 'HttpAction'"
    jcheck "d['payload']['steps'][0]['action']['url'] == 'https://hooks.example.com/in/{{payload.id}}'"
    jcheck "d['payload']['steps'][0]['action']['headers'] == [{'name': 'X-Team', 'value': 'ops'}]"
    jcheck "d['payload']['steps'][1]['action_type'] == 'EmailAction' and d['payload']['steps'][1]['action']['to'] == ['ops@example.com']"
}

@test "workflow create: a given secret and enabled=false are kept; a second create of the id is 409" {
    id=$(wf_new_id)
    req POST /api/v1/workflows "{\"id\":\"$id\",\"name\":\"w\",\"enabled\":false,\"secret\":\"my-Secret_1\",\"actions\":[$MAIL_ACTION]}"
    [ "$CODE" = 201 ]
    BODY=$(agg_event "$(wf_topic)" "$id" 1)
    jcheck "d['payload']['webhook_secret'] == '[sealed]' and len(d['payload']['webhook_secret_sealed']) == 11 + 29"
    [[ "$BODY" != *my-Secret_1* ]]
    jcheck "d['payload'].get('enabled', False) is False"
    before=$(all_ends_sum)
    req POST /api/v1/workflows "{\"id\":\"$id\",\"name\":\"again\",\"actions\":[$MAIL_ACTION]}"
    assert_error 409 version
    jcheck "d['code'] == 'conflict'"
    assert_all_unchanged "$before"
}

@test "workflow validation: every bad body is a 400 naming the field, and nothing is appended" {
    before=$(all_ends_sum)
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"ftp://x/"}]}'
    assert_error 400 'actions[0].url'
    jcheck "d['code'] == 'validation_failed'"
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://{{payload.h}}/"}]}'
    assert_error 400 'actions[0].url'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","headers":{"Host":"evil"}}]}'
    assert_error 400 'actions[0].headers.Host'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","body_template":"{{payload.a"}]}'
    assert_error 400 'actions[0].body_template'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"email","to":["not-an-address"],"subject":"s"}]}'
    assert_error 400 'actions[0].to[0]'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"email","to":["a@b.c"],"subject":"a\nBcc: x@y.z"}]}'
    assert_error 400 'actions[0].subject'
    req POST /api/v1/workflows '{"name":"w","actions":[]}'
    assert_error 400 actions
    req POST /api/v1/workflows '{"name":"w","secret":"has space","actions":[{"type":"email","to":["a@b.c"],"subject":"s"}]}'
    assert_error 400 secret
    req POST /api/v1/workflows '{"name":"","color":"red","actions":[{"type":"sms"},{"type":"http","url":"http://x/","method":"get"}]}'
    assert_error 400 name
    assert_error 400 color
    assert_error 400 'actions[0].type'
    assert_error 400 'actions[1].method'
    req POST /api/v1/workflows '{"name":'
    assert_error 400 body
    jcheck "d['code'] == 'invalid_json'"
    REQ_CT=text/plain req POST /api/v1/workflows '{"name":"w"}'
    assert_error 415
    req PUT /api/v1/workflows/whatever '{}'
    assert_error 400 body
    req PUT /api/v1/workflows/whatever '{"secret":"abc","rotate_secret":true}'
    assert_error 400 rotate_secret
    assert_all_unchanged "$before"
}

@test "workflow validation: control characters (C0, DEL, C1) refused in names, URLs, header values, addresses, subjects and templates" {
    before=$(all_ends_sum)
    ok='{"type":"http","url":"http://x/"}'
    req POST /api/v1/workflows "{\"name\":\"w\u0001\",\"actions\":[$ok]}"
    assert_error 400 name
    req POST /api/v1/workflows "{\"name\":\"w\",\"actions\":[{\"type\":\"http\",\"name\":\"s\u001b\",\"url\":\"http://x/\"}]}"
    assert_error 400 'actions[0].name'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/\u0085"}]}'
    assert_error 400 'actions[0].url'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","headers":{"X-A":"v\u0001"}}]}'
    assert_error 400 'actions[0].headers.X-A'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","headers":{"X-A":"\u001b[31m"}}]}'
    assert_error 400 'actions[0].headers.X-A'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","headers":{"X\u0001":"v"}}]}'
    assert_error 400
    jcheck "d['errors'][0]['field'].startswith('actions[0].headers.X')"
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"http","url":"http://x/","body_template":"a\u0007"}]}'
    assert_error 400 'actions[0].body_template'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"email","to":["a\u0085@b.c"],"subject":"s"}]}'
    assert_error 400 'actions[0].to[0]'
    req POST /api/v1/workflows '{"name":"w","actions":[{"type":"email","to":["a@b.c"],"subject":"s\u009b"}]}'
    assert_error 400 'actions[0].subject'
    id=$(wf_new_id)
    wf_create "$id"
    before=$(all_ends_sum)
    req PUT "/api/v1/workflows/$id" '{"name":"x\u007f"}'
    assert_error 400 name
    req PUT "/api/v1/workflows/$id" '{"actions":[{"type":"http","url":"http://x/","headers":{"X-A":"\u0090"}}]}'
    assert_error 400 'actions[0].headers.X-A'
    req PUT "/api/v1/workflows/$id" '{"secret":"a\u0001b"}'
    assert_error 400 secret
    jcheck "len(d['errors']) == 1"
    assert_all_unchanged "$before"
    # what the rule lets through: TAB in a header value, TAB/LF/CR in body templates
    req PUT "/api/v1/workflows/$id" '{"actions":[{"type":"http","url":"http://x/","headers":{"X-A":"a\tb"},"body_template":"{\r\n\t\"a\": 1\n}"}]}'
    [[ "$CODE" == 200 ]] || kq_fail "TAB / line breaks refused: $CODE $BODY"
}

@test "workflow update: 404 unknown, 412 If-Match, enabled+name = two events, no-op = 200 without event" {
    id=$(wf_new_id)
    before=$(all_ends_sum)
    req PUT "/api/v1/workflows/$id" '{"name":"x"}'
    assert_error 404
    req DELETE "/api/v1/workflows/$id"
    assert_error 404
    assert_all_unchanged "$before"

    wf_create "$id"
    before=$(all_ends_sum)
    req PUT "/api/v1/workflows/$id" '{"name":"x"}' -H 'If-Match: "7"'
    assert_error 412 version
    jcheck "d['errors'][0]['current_version'] == 1"
    assert_all_unchanged "$before"

    req PUT "/api/v1/workflows/$id" '{"name":"renamed","enabled":false}' -H 'If-Match: "1"'
    [ "$CODE" = 200 ]
    jcheck "d['id'] == '$id' and d['version'] == 3 and 'webhook_secret' not in d"
    [ "$(hdr ETag)" = '"3"' ]
    run agg_types "$(wf_topic)" "$id"
    echo "$output"
    [ "$output" = "$(printf '1 WorkflowCreated\n2 WorkflowUpdated\n3 WorkflowDisabled')" ]
    BODY=$(agg_event "$(wf_topic)" "$id" 2)
    jcheck "d['payload'] == {'name': 'renamed'}"

    before=$(all_ends_sum)
    req PUT "/api/v1/workflows/$id" '{"name":"renamed","enabled":false}'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
    assert_all_unchanged "$before"
}

@test "workflow: disabled -> 409 workflow_disabled without a run; delete -> trigger 404, webhook 401" {
    id=$(wf_new_id)
    wf_create "$id"
    req PUT "/api/v1/workflows/$id" '{"enabled":false}'
    [ "$CODE" = 200 ]
    before=$(all_ends_sum)
    req POST "/api/v1/workflows/$id/runs" '{"a":1}'
    assert_error 409
    jcheck "d['code'] == 'workflow_disabled'"
    hook "$id" "$WF_SECRET"
    assert_error 409
    jcheck "d['code'] == 'workflow_disabled'"
    # a wrong secret does not learn that the workflow is disabled
    hook "$id" "wrong-secret"
    assert_error 401
    assert_all_unchanged "$before"

    req PUT "/api/v1/workflows/$id" '{"enabled":true}'
    [ "$CODE" = 200 ]
    run agg_types "$(wf_topic)" "$id"
    [ "$output" = "$(printf '1 WorkflowCreated\n2 WorkflowDisabled\n3 WorkflowEnabled')" ]

    req DELETE "/api/v1/workflows/$id"
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 4"
    before=$(all_ends_sum)
    req POST "/api/v1/workflows/$id/runs" '{}'
    assert_error 404
    hook "$id" "$WF_SECRET" # a deleted workflow's webhook: the answer of a wrong secret
    assert_error 401
    [ "$(err_code)" = invalid_webhook_secret ]
    req PUT "/api/v1/workflows/$id" '{"name":"back"}'
    assert_error 404
    assert_all_unchanged "$before"
}

# ------------------------------------------------------------------ triggers

@test "manual trigger: 202 with run_id and Location; RunStarted carries steps and signing secret" {
    id=$(wf_new_id)
    wf_create "$id" "[$HTTP_ACTION,$MAIL_ACTION]"
    req POST "/api/v1/workflows/$id/runs" '{"id": "o-17", "n": [1, 2]}'
    [ "$CODE" = 202 ]
    jcheck "sorted(d) == ['consistency_token', 'id', 'run_id', 'version', 'workflow_id'] and d['id'] == d['run_id'] and d['workflow_id'] == '$id' and d['version'] == 1"
    run_id=$(jf 'd["run_id"]')
    [[ "$run_id" =~ $UUID4_RE ]]
    [[ "$(hdr Location)" == */api/v1/runs/$run_id ]]
    BODY=$(agg_event "$(run_topic)" "$run_id" 1)
    echo "$BODY"
    jcheck "d['aggregate_type'] == 'run' and d['payload_type'] == 'RunStarted' and d['actor'] == 'e2e-writer'"
    jcheck "d['payload']['workflow_id'] == '$id' and d['payload']['workflow_version'] == 1 and d['payload'].get('trigger', 'manual') == 'manual'"
    jcheck "json.loads(d['payload']['payload_json']) == {'id': 'o-17', 'n': [1, 2]}"
    jcheck "d['payload']['step_count'] == 2 and len(d['payload']['steps']) == 2 and 'signing_secret' not in d['payload']"
    jcheck "len(d['payload']['signing_secret_sealed']) == len('$WF_SECRET') + 29 and '$WF_SECRET' not in json.dumps(d)"

    # An empty body is the payload {}; another body type is refused.
    req POST "/api/v1/workflows/$id/runs" -
    [ "$CODE" = 202 ]
    BODY=$(agg_event "$(run_topic)" "$(jf 'd["run_id"]')" 1)
    jcheck "d['payload']['payload_json'] == '{}'"
    before=$(all_ends_sum)
    req POST "/api/v1/workflows/$id/runs" '[1,2]'
    assert_error 400 body
    REQ_CT=text/plain req POST "/api/v1/workflows/$id/runs" 'a=1'
    assert_error 415
    req POST "/api/v1/workflows/no-such-wf/runs" '{}'
    assert_error 404
    REQ_KEY=$KQ_KEY_READER req POST "/api/v1/workflows/$id/runs" '{}'
    assert_error 403
    assert_all_unchanged "$before"
}

@test "update actions: WorkflowUpdated holds the new steps; a run started later copies them and the version" {
    id=$(wf_new_id)
    wf_create "$id"
    req POST "/api/v1/workflows/$id/runs" '{}'
    [ "$CODE" = 202 ]
    old_run=$(jf 'd["run_id"]')
    req PUT "/api/v1/workflows/$id" "{\"actions\":[$MAIL_ACTION,$HTTP_ACTION]}"
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 2"
    BODY=$(agg_event "$(wf_topic)" "$id" 2)
    jcheck "d['payload_type'] == 'WorkflowUpdated' and list(d['payload']) == ['steps'] and [s['action_type'] for s in d['payload']['steps']] == ['EmailAction', 'HttpAction']"
    # the same actions again change nothing
    before=$(all_ends_sum)
    req PUT "/api/v1/workflows/$id" "{\"actions\":[$MAIL_ACTION,$HTTP_ACTION]}"
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 2"
    assert_all_unchanged "$before"

    req POST "/api/v1/workflows/$id/runs" '{}'
    [ "$CODE" = 202 ]
    BODY=$(agg_event "$(run_topic)" "$(jf 'd["run_id"]')" 1)
    jcheck "d['payload']['workflow_version'] == 2 and d['payload']['step_count'] == 2 and d['payload']['steps'][0]['action_type'] == 'EmailAction'"
    BODY=$(agg_event "$(run_topic)" "$old_run" 1)
    jcheck "d['payload']['workflow_version'] == 1 and d['payload']['step_count'] == 1"
}

@test "trigger with Idempotency-Key: a retry answers the same run id and appends nothing" {
    id=$(wf_new_id)
    wf_create "$id"
    key="trig-$RANDOM$RANDOM"
    req POST "/api/v1/workflows/$id/runs" '{"x":1}' -H "Idempotency-Key: $key"
    [ "$CODE" = 202 ]
    first=$(jf 'd["run_id"]')
    before=$(all_ends_sum)
    req POST "/api/v1/workflows/$id/runs" '{"x":1}' -H "Idempotency-Key: $key"
    [ "$CODE" = 202 ]
    [ "$(jf 'd["run_id"]')" = "$first" ]
    [[ "$(hdr Location)" == */api/v1/runs/$first ]]
    assert_all_unchanged "$before"
    req POST "/api/v1/workflows/$id/runs" '{"x":2}' -H "Idempotency-Key: $key"
    assert_error 422
    assert_all_unchanged "$before"

    # A webhook retry replays only with the same secret: its hash covers it.
    hkey="hook-$RANDOM$RANDOM"
    hook "$id" "$WF_SECRET" '{"h":1}' -H "Idempotency-Key: $hkey"
    [ "$CODE" = 202 ]
    hrun=$(jf 'd["run_id"]')
    before=$(all_ends_sum)
    hook "$id" "$WF_SECRET" '{"h":1}' -H "Idempotency-Key: $hkey"
    [ "$CODE" = 202 ]
    [ "$(jf 'd["run_id"]')" = "$hrun" ]
    hook "$id" "not-the-secret" '{"h":1}' -H "Idempotency-Key: $hkey"
    assert_error 422
    [[ "$BODY" != *"$hrun"* ]]
    assert_all_unchanged "$before"
}

@test "webhook: right secret 202 (RunStarted, trigger webhook, actor webhook); wrong or missing secret 401; unknown 401 too" {
    id=$(wf_new_id)
    wf_create "$id"
    hook "$id" "$WF_SECRET" '{"id":"h-9"}'
    [ "$CODE" = 202 ]
    run_id=$(jf 'd["run_id"]')
    [ "$(jf 'd["workflow_id"]')" = "$id" ]
    BODY=$(agg_event "$(run_topic)" "$run_id" 1)
    echo "$BODY"
    jcheck "d['payload']['trigger'] == 'webhook' and d['actor'] == 'webhook' and len(d['payload']['signing_secret_sealed']) == len('$WF_SECRET') + 29"
    [[ "$BODY" != *"$WF_SECRET"* ]]
    jcheck "len(d['payload']['steps']) == 1 and json.loads(d['payload']['payload_json']) == {'id': 'h-9'}"

    before=$(all_ends_sum)
    hook "$id" "wrong-secret"
    assert_error 401
    jcheck "d['code'] == 'invalid_webhook_secret'"
    hook "$id" "${WF_SECRET}x"
    assert_error 401
    hook "$id" -
    assert_error 401
    jcheck "d['code'] == 'invalid_webhook_secret'"
    REQ_KEY="" req POST "/hooks/$id" '{}' -H 'X-Webhook-Secret;'
    assert_error 401
    hook "$id" "$(printf 's%.0s' $(seq 256))"
    assert_error 400 X-Webhook-Secret
    hook "no-such-workflow" "$WF_SECRET"
    assert_error 401
    [ "$(err_code)" = invalid_webhook_secret ]
    hook "$id" "$WF_SECRET" '"just a string"'
    assert_error 400 body
    assert_all_unchanged "$before"

    # rotate_secret: the new secret is answered once; the old one stops working.
    req PUT "/api/v1/workflows/$id" '{"rotate_secret":true}'
    [ "$CODE" = 200 ]
    new=$(jf 'd["webhook_secret"]')
    [[ "$new" =~ ^[0-9a-f]{64}$ && "$new" != "$WF_SECRET" ]]
    hook "$id" "$WF_SECRET"
    assert_error 401
    hook "$id" "$new"
    [ "$CODE" = 202 ]
}

@test "webhook: X-Hub-Signature-256 (HMAC-SHA256 of the raw body) is accepted; a wrong one 401; malformed 400" {
    local body='{"id": "s-1",   "n" : 1}' sig
    id=$(wf_new_id)
    wf_create "$id"
    sig=$(hub_sig "$WF_SECRET" "$body")
    hook "$id" - "$body" -H "X-Hub-Signature-256: $sig"
    [ "$CODE" = 202 ]
    BODY=$(agg_event "$(run_topic)" "$(jf 'd["run_id"]')" 1)
    jcheck "d['payload']['trigger'] == 'webhook' and d['actor'] == 'webhook' and json.loads(d['payload']['payload_json']) == {'id': 's-1', 'n': 1}"
    # upper-case hex, and the secret beside the signature, both right
    up=${sig#sha256=}
    hook "$id" "$WF_SECRET" "$body" -H "X-Hub-Signature-256: sha256=${up^^}"
    [ "$CODE" = 202 ]
    hook "$id" - '' -H "X-Hub-Signature-256: $(hub_sig "$WF_SECRET" '')"
    [ "$CODE" = 202 ]

    before=$(all_ends_sum)
    # the signature of other bytes (one space less), or made with another key
    hook "$id" - '{"id": "s-1",  "n" : 1}' -H "X-Hub-Signature-256: $sig"
    assert_error 401
    [ "$(err_code)" = invalid_webhook_secret ]
    hook "$id" - "$body" -H "X-Hub-Signature-256: $(hub_sig "${WF_SECRET}x" "$body")"
    assert_error 401
    # a right signature does not excuse a wrong secret
    hook "$id" "wrong-secret" "$body" -H "X-Hub-Signature-256: $sig"
    assert_error 401
    for bad in "sha1=${sig#sha256=}" "sha256=${sig:7:63}" "sha256=${sig:7:63}g" "sha256:${sig:7}" "${sig}00"; do
        hook "$id" - "$body" -H "X-Hub-Signature-256: $bad"
        assert_error 400 X-Hub-Signature-256
    done
    assert_all_unchanged "$before"
}

@test "webhook: an unknown, deleted or impossible workflow id is answered exactly as a wrong secret" {
    local a b
    id=$(wf_new_id)
    wf_create "$id"
    gone=$(wf_new_id)
    wf_create "$gone"
    gone_secret=$WF_SECRET
    req DELETE "/api/v1/workflows/$gone"
    [ "$CODE" = 200 ]
    before=$(all_ends_sum)

    # the reference: a wrong secret on a live workflow (headers and body)
    hook "$id" "not-the-secret"
    assert_error 401
    a=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d.pop("instance", None); print(json.dumps(d, sort_keys=True))' "$BODY")
    ref_headers=$(grep -vi '^\(date\|content-length\|x-request-id\):' "$HDRS" | tr -d '\r' | sort)
    for target in "no-such-$RANDOM$RANDOM" "$gone" 'bad!id' "$(printf 'x%.0s' $(seq 300))"; do
        for cred in "X-Webhook-Secret: $gone_secret" "X-Hub-Signature-256: $(hub_sig "$gone_secret" '{"id":"h1"}')"; do
            hook "$target" - '{"id":"h1"}' -H "$cred"
            assert_error 401
            b=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d.pop("instance", None); print(json.dumps(d, sort_keys=True))' "$BODY")
            [ "$a" = "$b" ] || kq_fail "unknown $target answered $b, a wrong secret $a"
            [ "$(grep -vi '^\(date\|content-length\|x-request-id\):' "$HDRS" | tr -d '\r' | sort)" = "$ref_headers" ]
        done
    done
    assert_all_unchanged "$before"
}

# hook_from ADDR WF SECRET: a webhook from client address ADDR (X-Forwarded-For; the
# instance trusts 127.0.0.1 as a proxy).
hook_from() {
    hook "$2" "$3" '{"id":"h1"}' -H "X-Forwarded-For: $1"
}

metric() { curl -s "$CMD_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

@test "limits: failed webhooks per address and per workflow, requests per API key: 429 rate_limited + Retry-After" {
    local burst_key a b t n c secs first=""
    burst_key=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-burst --roles writer --file "$KCQRS_KEYS_FILE")
    # 3 failures per address and per workflow, one back per minute (the refill itself is
    # timed in test_kq_limit); each key 2 requests/s, 4 at once; on its own topics
    KCQRS_TOPIC_PREFIX="$KCQRS_TOPIC_PREFIX.lim" KCQRS_HOOK_FAIL_BURST=3 KCQRS_HOOK_FAIL_PER_MIN=1 \
        KCQRS_RATE_KEY_PER_S=2 KCQRS_RATE_KEY_BURST=4 KCQRS_HTTP_TRUSTED_PROXIES=127.0.0.1/32 \
        cmd_start lim
    wf_create wa
    a=$WF_SECRET
    wf_create wb
    b=$WF_SECRET

    # per workflow: three addresses fail once each on wa; then even the right secret from a
    # fourth address is refused, while wb from that address works
    for ip in 10.0.0.1 10.0.0.2 10.0.0.3; do
        hook_from $ip wa wrong
        assert_error 401
    done
    hook_from 10.0.0.4 wa "$a"
    assert_error 429
    [ "$(err_code)" = rate_limited ]
    grep -qiE '^Retry-After: ([1-9]|[1-5][0-9]|60)\s*$' "$HDRS"
    hook_from 10.0.0.4 wb "$b"
    [ "$CODE" = 202 ]

    # per address: one address fails on three unknown workflows (one failure each); then it
    # is refused on wb even with the right secret, another address is not
    for wf in nx1 nx2 nx3; do
        hook_from 10.0.0.9 $wf "$b"
        assert_error 401
    done
    hook_from 10.0.0.9 wb "$b"
    assert_error 429
    [ "$(err_code)" = rate_limited ]
    grep -qiE '^Retry-After: ([1-9]|[1-5][0-9]|60)\s*$' "$HDRS"
    hook_from 10.0.0.10 wb "$b"
    [ "$CODE" = 202 ]
    # six failures counted (a 429 is not one), two refusals
    [ "$(metric kcqrs_webhook_failures_total)" = 6 ]
    [ "$(metric kcqrs_webhook_rate_limited_total)" = 2 ]

    # per API key: a flood of 30 requests (each a 400 that writes nothing) gets at most
    # the burst (4) and 2/s through, the rest 429 rate_limited + Retry-After
    t=$(date +%s%N)
    n=0
    for i in $(seq 30); do
        c=$(curl -s -D "$BATS_TEST_TMPDIR/h" -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' -X POST \
            -H "Authorization: Bearer $burst_key" -H 'Content-Type: application/json' \
            --data-binary '{}' "$CMD_URL/api/v1/resources")
        if [[ $c == 400 ]]; then
            n=$((n + 1))
        else
            [[ $c == 429 ]] || kq_fail "request $i answered $c"
            if [[ -z $first ]]; then
                first=$i
                grep -qi '^Retry-After: 1\s*$' "$BATS_TEST_TMPDIR/h"
                BODY=$(cat "$BATS_TEST_TMPDIR/b")
                [ "$(err_code)" = rate_limited ]
            fi
        fi
    done
    secs=$((($(date +%s%N) - t) / 1000000000 + 1))
    ((n <= 4 + 2 * secs)) || kq_fail "$n of 30 passed in ${secs}s"
    [[ -n $first ]] || kq_fail "no 429 in 30 requests"
    [ "$(metric kcqrs_http_rate_limited_total)" -eq $((30 - n)) ]
    # another key has its own bucket; the flooding key is served again once a token is back
    REQ_KEY=$KQ_KEY_WRITER req POST /api/v1/resources '{}'
    [ "$CODE" = 400 ]
    kq_wait_for 5 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer $burst_key' -H 'Content-Type: application/json' --data-binary '{}' '$CMD_URL/api/v1/resources') == 400 ]]"
    # (the instance is stopped, and checked for a crash, by teardown_file)
}

# ------------------------------------------------------------------ worker attempts

@test "attempts: retry then succeeded -> RunSucceeded; repeats 409; wrong keys 401/403; bad bodies 400" {
    id=$(wf_new_id)
    wf_create "$id"
    req POST "/api/v1/workflows/$id/runs" '{"id":"a1"}'
    [ "$CODE" = 202 ]
    run_id=$(jf 'd["run_id"]')

    before=$(all_ends_sum)
    ATTEMPT_KEY=$KQ_KEY_WRITER attempt "$run_id" 0 1 retry '"next_delay_ms":100'
    assert_error 403
    ATTEMPT_KEY="" attempt "$run_id" 0 1 retry '"next_delay_ms":100'
    assert_error 401
    attempt "$run_id" 0 1 retry
    assert_error 400 next_delay_ms
    attempt "$run_id" 0 1 later
    assert_error 400 outcome
    REQ_KEY=$KQ_KEY_WORKER req POST "/internal/v1/runs/$run_id/attempts" '{"step":0}'
    assert_error 400 attempt
    attempt "no-such-run" 0 1 succeeded '"status_code":200'
    assert_error 404
    attempt "$run_id" 0 2 retry '"next_delay_ms":100'
    assert_error 409
    jcheck "d['code'] == 'attempt_gap'"
    attempt "$run_id" 1 1 retry '"next_delay_ms":100'
    assert_error 409
    jcheck "d['code'] == 'step_mismatch'"
    assert_all_unchanged "$before"

    attempt "$run_id" 0 1 retry '"status_code":503,"next_delay_ms":100'
    [ "$CODE" = 200 ]
    jcheck "d['id'] == '$run_id' and d['version'] == 2"
    attempt "$run_id" 0 2 succeeded '"status_code":200'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 5"
    run agg_types "$(run_topic)" "$run_id"
    echo "$output"
    [ "$output" = "$(printf '1 RunStarted\n2 StepAttempted\n3 StepAttempted\n4 StepSucceeded\n5 RunSucceeded')" ]
    BODY=$(agg_event "$(run_topic)" "$run_id" 2)
    jcheck "d['actor'] == 'e2e-worker' and d['payload'].get('step', 0) == 0 and d['payload']['attempt'] == 1 and d['payload']['status_code'] == 503 and d['payload']['next_delay_ms'] == 100 and d['payload']['delivery_id'] == '$run_id.0'"

    before=$(all_ends_sum)
    attempt "$run_id" 0 2 succeeded '"status_code":200'
    assert_error 409
    jcheck "d['code'] in ('attempt_recorded', 'run_finished')"
    assert_all_unchanged "$before"
    echo "$run_id" >"$BATS_FILE_TMPDIR/finished_run"
}

@test "attempts batch: several runs in one request and one transaction, each item answered on its own; repeats 409; bad items 400 alone" {
    id=$(wf_new_id)
    wf_create "$id"
    runs=()
    for i in 1 2 3; do
        req POST "/api/v1/workflows/$id/runs" "{\"n\":$i}"
        [ "$CODE" = 202 ]
        runs+=("$(jf 'd["run_id"]')")
    done
    item() { # RUN ATTEMPT OUTCOME [EXTRA]
        echo "{\"run_id\":\"$1\",\"step\":0,\"attempt\":$2,\"duration_ms\":3,\"delivery_id\":\"$1.0\",\"outcome\":\"$3\"${4:+,$4}}"
    }
    batch() { REQ_KEY="${ATTEMPT_KEY-$KQ_KEY_WORKER}" req POST /internal/v1/runs/attempts "$1" "${@:2}"; }

    # whole-request refusals append nothing
    before=$(all_ends_sum)
    ATTEMPT_KEY=$KQ_KEY_WRITER batch "{\"attempts\":[$(item "${runs[0]}" 1 succeeded '"status_code":200')]}"
    assert_error 403
    batch '{"attempts":[]}'
    assert_error 400 attempts
    batch '{"attempts":{}}'
    assert_error 400 attempts
    batch "{\"attempts\":[$(item "${runs[0]}" 1 succeeded)],\"x\":1}"
    assert_error 400 x
    batch '[1]'
    assert_error 400
    batch "{\"attempts\":[$(item "${runs[0]}" 1 succeeded)]}" -H 'Idempotency-Key: k1'
    assert_error 400 Idempotency-Key
    big=$(python3 -c 'import json; print(json.dumps({"attempts": [{"run_id": "r"}] * 257}))')
    batch "$big"
    assert_error 400 attempts
    # items that all fail validation: answered at once, nothing appended
    batch '{"attempts":[{"run_id":"x","step":0},7,{"step":0,"attempt":1,"duration_ms":1,"delivery_id":"d","outcome":"succeeded"}]}'
    [ "$CODE" = 200 ]
    jcheck "[r['status'] for r in d['results']] == [400, 400, 400]"
    jcheck "any(x['field'] == 'attempt' for x in d['results'][0]['problem']['errors'])"
    jcheck "d['results'][1]['id'] is None and d['results'][1]['problem']['code'] == 'validation_failed'"
    jcheck "any(x['field'] == 'run_id' for x in d['results'][2]['problem']['errors'])"
    assert_all_unchanged "$before"

    # one request: run 0 succeeds, run 1 retries, a bad item, an unknown run, run 2 succeeds
    committed=$(metric 'kcqrs_commands_transactions_total{result="committed"}')
    batch "{\"attempts\":[$(item "${runs[0]}" 1 succeeded '"status_code":200'),$(item "${runs[1]}" 1 retry '"status_code":503,"next_delay_ms":100'),$(item "${runs[2]}" 1 later),$(item no-such-run 1 succeeded),$(item "${runs[2]}" 1 succeeded '"status_code":201')]}"
    [ "$CODE" = 200 ]
    jcheck "[r['status'] for r in d['results']] == [200, 200, 400, 404, 200]"
    jcheck "[r['id'] for r in d['results']] == ['${runs[0]}', '${runs[1]}', '${runs[2]}', 'no-such-run', '${runs[2]}']"
    jcheck "d['results'][0]['version'] == 4 and d['results'][1]['version'] == 2 and d['results'][4]['version'] == 4"
    jcheck "all(r['consistency_token'] for r in d['results'] if r['status'] == 200)"
    jcheck "d['results'][2]['problem']['code'] == 'validation_failed' and any(x['field'] == 'outcome' for x in d['results'][2]['problem']['errors'])"
    jcheck "d['results'][3]['problem']['code'] == 'not_found'"
    # the three runs' events in ONE transaction
    [ "$(metric 'kcqrs_commands_transactions_total{result="committed"}')" = $((committed + 1)) ]
    run agg_types "$(run_topic)" "${runs[0]}"
    [ "$output" = "$(printf '1 RunStarted\n2 StepAttempted\n3 StepSucceeded\n4 RunSucceeded')" ]
    run agg_types "$(run_topic)" "${runs[1]}"
    [ "$output" = "$(printf '1 RunStarted\n2 StepAttempted')" ]
    BODY=$(agg_event "$(run_topic)" "${runs[1]}" 2)
    jcheck "d['actor'] == 'e2e-worker' and d['payload']['status_code'] == 503 and d['payload']['next_delay_ms'] == 100 and d['payload']['delivery_id'] == '${runs[1]}.0'"

    # the same request again: every item answered as a repeat, nothing appended
    before=$(all_ends_sum)
    batch "{\"attempts\":[$(item "${runs[0]}" 1 succeeded '"status_code":200'),$(item "${runs[1]}" 1 retry '"status_code":503,"next_delay_ms":100')]}"
    [ "$CODE" = 200 ]
    jcheck "[r['status'] for r in d['results']] == [409, 409]"
    jcheck "d['results'][0]['problem']['code'] in ('attempt_recorded', 'run_finished') and d['results'][1]['problem']['code'] == 'attempt_recorded'"
    jcheck "d['results'][1]['problem']['errors'][0]['recorded_attempts'] == 1"
    assert_all_unchanged "$before"
    # two attempts of one run in one batch are decided in order
    batch "{\"attempts\":[$(item "${runs[1]}" 2 retry '"next_delay_ms":10'),$(item "${runs[1]}" 3 succeeded '"status_code":200')]}"
    [ "$CODE" = 200 ]
    jcheck "[r['status'] for r in d['results']] == [200, 200] and [r['version'] for r in d['results']] == [3, 6]"
}

@test "attempts: failed -> StepFailed + RunFailed; a repeat of a recorded attempt is 409 attempt_recorded" {
    id=$(wf_new_id)
    wf_create "$id" "[$HTTP_ACTION,$MAIL_ACTION]"
    req POST "/api/v1/workflows/$id/runs" '{"id":"a2"}'
    run_id=$(jf 'd["run_id"]')
    attempt "$run_id" 0 1 succeeded '"status_code":204'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"
    attempt "$run_id" 1 1 retry '"error":"smtp: 451","next_delay_ms":50'
    [ "$CODE" = 200 ]
    before=$(all_ends_sum)
    attempt "$run_id" 1 1 retry '"error":"smtp: 451","next_delay_ms":50'
    assert_error 409 attempt
    jcheck "d['code'] == 'attempt_recorded'"
    jcheck "d['errors'][0]['current_step'] == 1 and d['errors'][0]['recorded_attempts'] == 1"
    attempt "$run_id" 0 2 succeeded
    assert_error 409
    jcheck "d['code'] == 'step_mismatch'"
    assert_all_unchanged "$before"
    echo "$run_id" >"$BATS_FILE_TMPDIR/open_run"

    attempt "$run_id" 1 2 failed '"error":"smtp: 550 no such user"'
    [ "$CODE" = 200 ]
    run agg_types "$(run_topic)" "$run_id"
    echo "$output"
    [ "$output" = "$(printf '1 RunStarted\n2 StepAttempted\n3 StepSucceeded\n4 StepAttempted\n5 StepAttempted\n6 StepFailed\n7 RunFailed')" ]
    BODY=$(agg_event "$(run_topic)" "$run_id" 7)
    jcheck "d['payload']['step'] == 1 and d['payload']['error'] == 'smtp: 550 no such user'"
    before=$(all_ends_sum)
    attempt "$run_id" 1 3 retry '"next_delay_ms":5'
    assert_error 409
    jcheck "d['code'] == 'run_finished'"
    assert_all_unchanged "$before"
    echo "$run_id" >"$BATS_FILE_TMPDIR/failed_run"
}

@test "restart (clean; SIGKILL; SIGKILL without snapshot): the state comes back; the same repeats are still 409" {
    [ -s "$BATS_FILE_TMPDIR/failed_run" ] || skip "needs the attempts tests"
    failed=$(cat "$BATS_FILE_TMPDIR/failed_run")
    id=$(wf_new_id)
    wf_create "$id"
    req POST "/api/v1/workflows/$id/runs" '{}'
    open=$(jf 'd["run_id"]')
    attempt "$open" 0 1 retry '"next_delay_ms":10'
    [ "$CODE" = 200 ]

    # clean stop (snapshot), SIGKILL (snapshot + log tail), SIGKILL without
    # the snapshot (the log alone)
    for how in stop kill wipe; do
        case "$how" in
        stop) cmd_stop main ;;
        kill) cmd_kill main ;;
        wipe)
            cmd_kill main
            rm -rf "$BATS_FILE_TMPDIR/lmdb-main"
            ;;
        esac
        cmd_start main
        before=$(all_ends_sum)
        attempt "$open" 0 1 retry '"next_delay_ms":10'
        assert_error 409
        jcheck "d['code'] == 'attempt_recorded'"
        attempt "$failed" 1 3 retry '"next_delay_ms":5'
        assert_error 409
        jcheck "d['code'] == 'run_finished'"
        req POST /api/v1/workflows "{\"id\":\"$id\",\"name\":\"again\",\"actions\":[$MAIL_ACTION]}"
        assert_error 409
        hook "$id" "wrong"
        assert_error 401
        assert_all_unchanged "$before"
    done
    # and it still takes new attempts with the right numbers
    attempt "$open" 0 2 succeeded '"status_code":200'
    [ "$CODE" = 200 ]
    run agg_types "$(run_topic)" "$open"
    [ "$output" = "$(printf '1 RunStarted\n2 StepAttempted\n3 StepAttempted\n4 StepSucceeded\n5 RunSucceeded')" ]
}
