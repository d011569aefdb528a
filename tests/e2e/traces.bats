#!/usr/bin/env bats
# tests/e2e/traces.bats — W3C trace context across the services, exported with OTLP/HTTP
# to a real Jaeger (all-in-one, in-memory storage; `ops/install-test-tools.sh jaeger` builds it into
# .cache/): one webhook-triggered run is ONE trace from the webhook request through the
# command, both projector targets and the worker's outbound call (whose receiver sees
# the same trace id) and its record back to kcqrs-commands; a malformed incoming
# traceparent starts a new trace (never a 4xx), a valid one is continued; a service
# without KCQRS_OTLP_ENDPOINT exports nothing.
#
# One Jaeger, one kcqrs-commands (c1), one kcqrs-projector (lmdb and pg) and one
# kcqrs-worker (w1) for the file, all exporting to Jaeger.

load helpers
load commands_helpers
load worker_helpers
load projector_helpers

JAEGER_BIN="$KQ_REPO/.cache/jaeger-v1.75.0/jaeger"

jaeger_start() {
    local d="$BATS_FILE_TMPDIR"
    [[ -x "$JAEGER_BIN" ]] || kq_fail "$JAEGER_BIN is missing: run ops/install-test-tools.sh jaeger" || return 1
    export JAEGER_HEALTH_PORT JAEGER_QUERY_PORT JAEGER_QUERY_GRPC_PORT JAEGER_OTLP_PORT
    JAEGER_HEALTH_PORT=$(kq_free_port)
    JAEGER_QUERY_PORT=$(kq_free_port)
    JAEGER_QUERY_GRPC_PORT=$(kq_free_port)
    JAEGER_OTLP_PORT=$(kq_free_port)
    cat >"$d/jaeger.yaml" <<'EOF'
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${env:JAEGER_HEALTH_PORT}
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:${env:JAEGER_QUERY_PORT}
    grpc:
      endpoint: 127.0.0.1:${env:JAEGER_QUERY_GRPC_PORT}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${env:JAEGER_OTLP_PORT}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
EOF
    kq_bg "$d/jaeger.log" "$JAEGER_BIN" --config "$d/jaeger.yaml" >"$d/jaeger.pid"
    echo "http://127.0.0.1:$JAEGER_QUERY_PORT" >"$d/jaeger.url"
    echo "http://127.0.0.1:$JAEGER_OTLP_PORT" >"$d/otlp.url"
    kq_wait_http "http://127.0.0.1:$JAEGER_HEALTH_PORT/status" 60
    kq_wait_http "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" 30
}

setup_file() {
    # the tool this file needs, installed if missing; waits if another run installs it
    "$KQ_REPO/ops/install-test-tools.sh" jaeger >"$BATS_FILE_TMPDIR/tools.log" 2>&1 ||
        kq_fail "ops/install-test-tools.sh jaeger failed: $(tail -20 "$BATS_FILE_TMPDIR/tools.log")" || return 1
    cmd_make_keys
    wk_make_key
    kq_fresh_db traces
    jaeger_start
    KCQRS_OTLP_ENDPOINT=$(cat "$BATS_FILE_TMPDIR/otlp.url")
    export KCQRS_OTLP_ENDPOINT KCQRS_WORKER_ALLOW_PRIVATE=1 KCQRS_WORKER_RETRY_BASE_MS=100 \
        KCQRS_WORKER_MAX_ATTEMPTS=2
    cmd_start c1
    echo "$CMD_URL" >"$BATS_FILE_TMPDIR/cmd_url"
    echo "$CMD_INTERNAL_URL" >"$BATS_FILE_TMPDIR/cmd_internal_url"
    proj_start
    proj_wait_ready 60
    wk_start w1
}

teardown_file() {
    local rc=0
    wk_stop_all || rc=1
    proj_stop || rc=1
    cmd_stop_all || rc=1
    rcv_stop_all
    [[ -f "$BATS_FILE_TMPDIR/qry.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    [[ -f "$BATS_FILE_TMPDIR/jaeger.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/jaeger.pid")" 10
    return $rc
}

setup() {
    CMD_URL=$(cat "$BATS_FILE_TMPDIR/cmd_url")
    CMD_INTERNAL_URL=$(cat "$BATS_FILE_TMPDIR/cmd_internal_url")
    JAEGER_URL=$(cat "$BATS_FILE_TMPDIR/jaeger.url")
}

# trace_check TRACE_ID CHECK: Jaeger's trace as JSON on stdin of the python CHECK (which
# exits non-zero, saying why, until the trace holds what it wants).
trace_get() {
    curl -fsS --max-time 5 "$JAEGER_URL/api/traces/$1"
}

@test "a webhook-triggered run is one trace: commands, projector (lmdb, pg), worker, receiver" {
    rcv_start hook 200
    wf_create "{\"name\":\"traced\",\"secret\":\"trace-secret-1\",\"actions\":[{\"type\":\"http\",\"url\":\"$(rcv_url hook)/deliver\"}]}"
    REQ_KEY="" req POST "/hooks/$WF_ID" '{"n":1}' -H 'X-Webhook-Secret: trace-secret-1'
    [[ "$CODE" == 202 ]]
    run_id=$(jf 'd["run_id"]')
    run_wait_end "$run_id" 30
    [[ $(run_end "$run_id") == RunSucceeded ]]
    # the receiver got the attempt's trace context
    tp=$(rcv_log hook | python3 -c 'import json, sys
r = json.loads(sys.stdin.readline())
print({k.lower(): v for k, v in r["headers"].items()}["traceparent"])')
    echo "receiver traceparent: $tp"
    [[ "$tp" =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-01$ ]]
    tid=${tp:3:32}
    sid=${tp:36:16}
    # Jaeger holds every part of the run under that one trace id
    check() {
        trace_get "$tid" | python3 -c '
import json, sys
run_id, sid = sys.argv[1], sys.argv[2]
d = json.load(sys.stdin)["data"]
assert len(d) == 1, "not one trace"
t = d[0]
procs = {p: v["serviceName"] for p, v in t["processes"].items()}
spans = t["spans"]
byid = {s["spanID"]: s for s in spans}
def tags(s): return {x["key"]: x["value"] for x in s["tags"]}
def parent(s):
    refs = [r for r in s["references"] if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None
def find(svc, name, **want):
    out = []
    for s in spans:
        tg = tags(s)
        if procs[s["processID"]] == svc and s["operationName"] == name and \
           all(tg.get(k) == v for k, v in want.items()):
            out.append(s)
    return out
hook = find("kcqrs-commands", "POST webhook", **{"http.response.status_code": 202})
assert len(hook) == 1, "webhook request span: %d" % len(hook)
assert parent(hook[0]) is None, "the webhook request started the trace"
start = find("kcqrs-commands", "command run.start", **{"kcqrs.aggregate_id": run_id})
assert len(start) == 1 and parent(start[0]) == hook[0]["spanID"], "command span"
st = tags(start[0])
assert st["kcqrs.event_type"] == "RunStarted" and "messaging.kafka.offset" in st, st
for target in ("lmdb", "pg"):
    ap = [s for s in find("kcqrs-projector", "apply " + target, **{"kcqrs.aggregate_id": run_id})
          if tags(s)["kcqrs.event_type"] == "RunStarted"]
    assert len(ap) == 1, "apply %s RunStarted: %d" % (target, len(ap))
    assert parent(ap[0]) == start[0]["spanID"], "apply %s parent" % target
    at = tags(ap[0])
    assert at["messaging.kafka.offset"] == st["messaging.kafka.offset"], (at, st)
    assert at["messaging.destination.name"].endswith(".run.events"), at
att = find("kcqrs-worker", "attempt step 0", **{"kcqrs.aggregate_id": run_id})
assert len(att) == 1, "attempt span: %d" % len(att)
assert att[0]["spanID"] == sid, "the receiver saw the attempt span as its parent"
assert parent(att[0]) == start[0]["spanID"], "attempt parent"
assert tags(att[0])["http.response.status_code"] == 200
rec = find("kcqrs-commands", "command run.attempt", **{"kcqrs.aggregate_id": run_id})
assert len(rec) == 1, "record command span: %d" % len(rec)
p = byid.get(parent(rec[0]))
assert p is not None, "record span parent missing"
# single record: parent = the record request span (child of the attempt); batch: the attempt
assert p["spanID"] == sid or parent(p) == sid, "the record continues the attempt"
for target in ("lmdb", "pg"):
    n = [s for s in find("kcqrs-projector", "apply " + target, **{"kcqrs.aggregate_id": run_id})
         if parent(s) == rec[0]["spanID"]]
    assert len(n) >= 2, "the record events applied to %s: %d" % (target, len(n))
assert all(s["traceID"] == d[0]["traceID"] for s in spans)
print("ok", len(spans), "spans")
' "$run_id" "$sid"
    }
    kq_wait_for 20 check
    check
}

@test "a malformed traceparent starts a new trace (201, not 4xx); a valid one is continued" {
    req POST /api/v1/resources '{"name":"bad tp"}' -H 'traceparent: 00-zz-bad'
    [[ "$CODE" == 201 ]]
    bad_id=$(jf 'd["id"]')
    given=4bf92f3577b34da6a3ce929d0e0e4736
    req POST /api/v1/resources '{"name":"good tp"}' -H "traceparent: 00-$given-00f067aa0ba902b7-01"
    [[ "$CODE" == 201 ]]
    good_id=$(jf 'd["id"]')
    find_trace() { # AGGREGATE_ID: the trace id of kcqrs-commands' create span of it
        curl -fsS --max-time 5 -G "$JAEGER_URL/api/traces" --data-urlencode service=kcqrs-commands \
            --data-urlencode "tags={\"kcqrs.aggregate_id\":\"$1\"}" --data-urlencode limit=5 |
            python3 -c 'import json, sys
d = json.load(sys.stdin)["data"]
assert len(d) == 1, len(d)
t = d[0]
names = sorted(s["operationName"] for s in t["spans"]
               if t["processes"][s["processID"]]["serviceName"] == "kcqrs-commands")
assert names == ["POST resource_create", "command resource.create"], names
srv = [s for s in t["spans"] if s["operationName"] == "POST resource_create"][0]
print(t["traceID"], srv["references"][0]["spanID"] if srv["references"] else "-")'
    }
    kq_wait_for 20 find_trace "$bad_id"
    read -r bad_tid bad_parent < <(find_trace "$bad_id")
    [[ "$bad_tid" =~ ^[0-9a-f]{32}$ && "$bad_tid" != "$given" && "$bad_parent" == - ]]
    kq_wait_for 20 find_trace "$good_id"
    read -r good_tid good_parent < <(find_trace "$good_id")
    [[ "$good_tid" == "$given" && "$good_parent" == 00f067aa0ba902b7 ]]
    # the event record carries the command span's context: the projector continued it
    kq_wait_for 20 bash -c "curl -fsS '$JAEGER_URL/api/traces/$given' | grep -q '\"apply pg\"'"
}

@test "without KCQRS_OTLP_ENDPOINT nothing is exported" {
    local port d="$BATS_FILE_TMPDIR"
    proj_init
    port=$(kq_free_port)
    env -u KCQRS_OTLP_ENDPOINT KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        bash -c 'exec "$0" >"$1" 2>&1 3>&- </dev/null' "$KCQRS_BIN/kcqrs-query" "$d/qry.log" &
    echo $! >"$d/qry.pid"
    kq_wait_port "$port" 30
    for i in 1 2 3; do
        curl -fsS -o /dev/null -H "Authorization: Bearer $KQ_KEY_READER" \
            "http://127.0.0.1:$port/api/v1/resources?limit=1"
    done
    ! curl -fsS "http://127.0.0.1:$port/metrics" | grep -q kcqrs_trace_spans || false
    ! grep -q "trace export" "$d/qry.log" || false
    # a request to an exporting service afterwards reaches Jaeger; kcqrs-query's never did
    req POST /api/v1/resources '{"name":"after"}'
    [[ "$CODE" == 201 ]]
    id=$(jf 'd["id"]')
    kq_wait_for 20 bash -c "curl -fsS -G '$JAEGER_URL/api/traces' --data-urlencode service=kcqrs-commands --data-urlencode 'tags={\"kcqrs.aggregate_id\":\"$id\"}' | grep -q '$id'"
    services=$(curl -fsS "$JAEGER_URL/api/services")
    echo "$services"
    [[ "$services" == *kcqrs-commands* && "$services" == *kcqrs-projector* ]]
    [[ "$services" == *kcqrs-worker* ]]
    [[ "$services" != *kcqrs-query* ]]
    # the exporting services count what they sent
    [[ $(curl -fsS "$CMD_URL/metrics" | awk '$1 == "kcqrs_trace_spans_exported_total" {print $2}') -gt 0 ]]
}
