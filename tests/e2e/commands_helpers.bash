# tests/e2e/commands_helpers.bash — drive kcqrs-commands instances black-box,
# over HTTP and through the Kafka log, for the commands_*.bats files.
#
# Load after helpers:     load helpers
#                         load commands_helpers
#
# Instances. cmd_start NAME starts build/bin/kcqrs-commands on a free port with
# KCQRS_LMDB_DIR=$BATS_FILE_TMPDIR/lmdb-NAME (kept across restarts of NAME),
# KCQRS_KEYS_FILE from cmd_make_keys, the file's KCQRS_TOPIC_PREFIX and the
# suite's broker (both overridable in the environment of the call), and waits
# until GET /ready answers 200. Its log is $BATS_FILE_TMPDIR/NAME.log, its
# base URL is printed by cmd_url NAME, and the last started one is $CMD_URL
# (its internal listener: cmd_internal_url NAME, $CMD_INTERNAL_URL; the scheme is
# $KQ_HTTP_SCHEME, http unless a test serves HTTPS).
# cmd_stop NAME sends SIGTERM (SIGKILL after 10 s); cmd_kill NAME sends
# SIGKILL; cmd_stop_all (call it in teardown_file) stops every instance this
# file started.
#
# Requests. req METHOD PATH [BODY [CURL_ARGS...]] sends one request to
# $CMD_URL and sets CODE (HTTP status), BODY (answer body) and HDRS (the file
# holding the answer's headers). BODY "" or "-" sends no body; "@FILE" sends
# the file's bytes. Defaults: Authorization: Bearer $REQ_KEY (the writer key
# unless REQ_KEY is set; REQ_KEY="" sends no Authorization) and, when there is
# a body, Content-Type: ${REQ_CT-application/json} (REQ_CT="" sends none).
# Each request and its answer are echoed, so a failing test shows them.
#
# Checks. jf EXPR prints a Python expression over d = json.loads(BODY);
# jcheck EXPR fails the test unless the Python expression is true;
# hdr NAME prints an answer header's value; assert_error STATUS [FIELD]
# checks the status, the problem+json error shape (README "Errors") and, with
# FIELD, that one item of "errors" names that field.
#
# The log. ends_sum prints the sum of the resource topic's end offsets (high
# watermarks: transaction markers included, so "unchanged" means nothing was
# produced, not even an aborted transaction; it first waits until no transaction
# is open and every commit marker is written, since a producer's commit returns
# before the markers are); dump_topic prints every committed
# record of the resource topic (see tests/tools/kq_offsets.c for the format);
# versions_of ID lists "partition version event_type" of one aggregate.
#
# Load with a ledger. load_start URL LEDGER [N] runs N background loops of
# creates (Idempotency-Key = id) writing "<id> <status>" lines to LEDGER;
# load_stop LEDGER ends them; ledger_check LEDGER fails unless every
# acknowledged (201) command is in the log exactly once and no id twice.
# metric NAME prints one sample of the instance's /metrics.

# cmd_make_keys: keys file with writer, reader and admin keys in
# $BATS_FILE_TMPDIR; exports KQ_KEY_WRITER, KQ_KEY_READER, KQ_KEY_ADMIN and
# KCQRS_KEYS_FILE. Key names: e2e-writer, e2e-reader, e2e-admin.
cmd_make_keys() {
    local f="$BATS_FILE_TMPDIR/keys" role
    rm -f "$f"
    for role in writer reader admin; do
        local k
        k=$("$KCQRS_BIN/kcqrs-keys" create --name "e2e-$role" --roles "$role" --file "$f") ||
            return 1
        export "KQ_KEY_${role^^}=$k"
    done
    export KCQRS_KEYS_FILE="$f"
}

cmd_url() { echo "${KQ_HTTP_SCHEME:-http}://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/$1.port")"; }
cmd_internal_url() { echo "${KQ_HTTP_SCHEME:-http}://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/$1.iport")"; }
cmd_pid() { cat "$BATS_FILE_TMPDIR/$1.pid"; }
cmd_log() { cat "$BATS_FILE_TMPDIR/$1.log"; }

# cmd_start NAME [READY_TIMEOUT_S]: start (or restart, same LMDB dir and port)
# instance NAME and wait for /ready. With CMD_NO_WAIT=1, do not wait.
cmd_start() {
    local name="$1" timeout="${2:-60}" port iport pid
    if [[ -f "$BATS_FILE_TMPDIR/$name.port" ]]; then
        port=$(cat "$BATS_FILE_TMPDIR/$name.port")
        iport=$(cat "$BATS_FILE_TMPDIR/$name.iport")
    else
        port=$(kq_free_port)
        echo "$port" >"$BATS_FILE_TMPDIR/$name.port"
        iport=$(kq_free_port)
        while [[ "$iport" == "$port" ]]; do # two picks may return the same free port
            iport=$(kq_free_port)
        done
        echo "$iport" >"$BATS_FILE_TMPDIR/$name.iport"
    fi
    mkdir -p "$BATS_FILE_TMPDIR/lmdb-$name"
    # Keep earlier logs of a restarted instance.
    [[ -f "$BATS_FILE_TMPDIR/$name.log" ]] &&
        cat "$BATS_FILE_TMPDIR/$name.log" >>"$BATS_FILE_TMPDIR/$name.log.old"
    pid=$(KCQRS_COMMANDS_ADDR="127.0.0.1:$port" KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$iport" \
        KCQRS_LMDB_DIR="$BATS_FILE_TMPDIR/lmdb-$name" \
        kq_bg "$BATS_FILE_TMPDIR/$name.log" "$KCQRS_BIN/kcqrs-commands")
    echo "$pid" >"$BATS_FILE_TMPDIR/$name.pid"
    echo "$name" >>"$BATS_FILE_TMPDIR/instances"
    CMD_URL="${KQ_HTTP_SCHEME:-http}://127.0.0.1:$port"
    CMD_INTERNAL_URL="${KQ_HTTP_SCHEME:-http}://127.0.0.1:$iport"
    [[ "${CMD_NO_WAIT:-0}" == 1 ]] && return 0
    if ! cmd_wait_ready "$name" "$timeout"; then
        echo "kcqrs-commands $name did not become ready; its log:" >&2
        tail -n 40 "$BATS_FILE_TMPDIR/$name.log" >&2
        return 1
    fi
}

# cmd_wait_ready NAME [SECONDS]: GET /ready answers 200 (and the process lives).
cmd_wait_ready() {
    local name="$1" timeout="${2:-60}" url pid
    url=$(cmd_url "$name")
    pid=$(cmd_pid "$name")
    kq_wait_for "$timeout" bash -c "kill -0 $pid && [[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '$url/ready') == 200 ]]"
}

# cmd_stop NAME [SECONDS]: SIGTERM (SIGKILL after SECONDS). An instance found
# dead although nobody killed it crashed: that is noted for cmd_stop_all.
cmd_stop() {
    local pid
    pid=$(cmd_pid "$1")
    if ! kill -0 "$pid" 2>/dev/null && [[ ! -e "$BATS_FILE_TMPDIR/$1.killed.$pid" ]]; then
        echo "$1" >>"$BATS_FILE_TMPDIR/crashed"
    fi
    # stopped on purpose: not a crash when cmd_stop_all finds it gone later (once reaped,
    # a stopped process is as gone as a crashed one)
    touch "$BATS_FILE_TMPDIR/$1.killed.$pid"
    kq_stop "$pid" "${2:-10}"
}

cmd_kill() {
    local pid
    pid=$(cmd_pid "$1")
    touch "$BATS_FILE_TMPDIR/$1.killed.$pid"
    kq_kill "$pid"
}

# cmd_stop_all: stop every instance; fail (showing the log) if one had
# crashed or its log holds a sanitizer report (with KCQRS_BIN pointing at a
# SANITIZE=address,undefined build, e.g. build/san-address-undefined/bin).
cmd_stop_all() {
    local name rc=0 log
    [[ -f "$BATS_FILE_TMPDIR/instances" ]] || return 0
    for name in $(sort -u "$BATS_FILE_TMPDIR/instances"); do
        cmd_stop "$name" 5
    done
    for name in $(sort -u "$BATS_FILE_TMPDIR/instances"); do
        log="$BATS_FILE_TMPDIR/$name.log"
        if grep -qx "$name" "$BATS_FILE_TMPDIR/crashed" 2>/dev/null ||
            grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
                "$log" "$log.old" 2>/dev/null; then
            echo "kcqrs-commands $name crashed or has a sanitizer report; its log:" >&2
            if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log.old" "$log" 2>/dev/null; then
                cat "$log.old" "$log" 2>/dev/null |
                    grep -E -A 24 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' | head -n 80 >&2
            else
                cat "$log.old" "$log" 2>/dev/null | tail -n 40 >&2
            fi
            rc=1
        fi
    done
    return $rc
}

# cmd_use NAME: later requests go to instance NAME.
cmd_use() { CMD_URL=$(cmd_url "$1"); }

REQ_N=0
req() {
    local method="$1" path="$2" body="${3-}" d="$BATS_TEST_TMPDIR" key
    shift 2
    [[ $# -gt 0 ]] && shift
    REQ_N=$((REQ_N + 1))
    HDRS="$d/req$REQ_N.headers"
    local args=(-sS -o "$d/req$REQ_N.body" -D "$HDRS" -w '%{http_code}' -X "$method" --max-time 30)
    key="${REQ_KEY-$KQ_KEY_WRITER}"
    [[ -n "$key" ]] && args+=(-H "Authorization: Bearer $key")
    if [[ -n "$body" && "$body" != - ]]; then
        args+=(--data-binary "$body")
        if [[ -n "${REQ_CT-application/json}" ]]; then
            args+=(-H "Content-Type: ${REQ_CT-application/json}")
        else
            # curl adds application/x-www-form-urlencoded on its own: remove it.
            args+=(-H "Content-Type:")
        fi
    fi
    REQ_PATH="${path%%\?*}"
    CODE=$(curl "${args[@]}" "$@" "$CMD_URL$path") || CODE="curl-failed"
    BODY=$(cat "$d/req$REQ_N.body" 2>/dev/null || true)
    if [[ ${#body} -gt 300 ]]; then
        echo "> $method $path (${#body} bytes) $* -> $CODE ${BODY:0:500}"
    else
        echo "> $method $path $body $* -> $CODE ${BODY:0:500}"
    fi
}

jf() {
    python3 -c 'import json, sys
d = json.loads(sys.argv[2])
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$1" "$BODY"
}

jcheck() {
    python3 -c 'import json, sys
d = json.loads(sys.argv[2])
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" "$BODY" || kq_fail "check failed: $1 on body: $BODY"
}

# jsame JSON: BODY is the same JSON value as JSON.
jsame() {
    python3 -c 'import json, sys
sys.exit(0 if json.loads(sys.argv[1]) == json.loads(sys.argv[2]) else 1)' "$1" "$BODY" ||
        kq_fail "expected the same answer as $1, got $BODY"
}

# hdr NAME: value of the answer header NAME (case-insensitive), without CR.
hdr() {
    awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$1")" 'BEGIN { FS = ":" }
        { k = tolower($1) } k == n { sub(/^[^:]*:[ \t]*/, ""); sub(/\r$/, ""); print; exit }' "$HDRS"
}

# assert_error STATUS [FIELD] (one python3 run: the tests make many of these):
# the status, Content-Type application/problem+json and the problem details
# body (RFC 9457: type urn:kcqrs:problem:<code>, title, status, detail,
# instance = the request's path, code, errors), with FIELD one item of
# "errors" naming that field.
assert_error() {
    python3 -c 'import json, sys, urllib.parse
code, want, field, body, hdrs, path = sys.argv[1:7]
def fail(why):
    sys.exit("%s: status %s, body: %s" % (why, code, body))
if code != want:
    fail("expected status " + want)
ctype = ""
for line in open(hdrs, encoding="latin-1"):
    k, _, v = line.partition(":")
    if k.strip().lower() == "content-type":
        ctype = v.split(";")[0].strip()
if ctype != "application/problem+json":
    fail("Content-Type %r, not application/problem+json" % ctype)
try:
    d = json.loads(body)
except ValueError:
    fail("error answer is not JSON")
if not (isinstance(d, dict) and isinstance(d.get("code"), str) and d["code"]
        and d.get("type") == "urn:kcqrs:problem:" + d["code"]
        and isinstance(d.get("title"), str) and d["title"]
        and d.get("status") == int(want)
        and isinstance(d.get("detail"), str) and d["detail"]
        and isinstance(d.get("errors"), list)):
    fail("not the problem+json shape {type, title, status, detail, instance, code, errors}")
if path and urllib.parse.unquote(d.get("instance") or "") != urllib.parse.unquote(path):
    fail("instance is not the request path " + repr(path))
if field and not any(isinstance(x, dict) and x.get("field") == field
                     and isinstance(x.get("message"), str) for x in d["errors"]):
    fail("no item of errors names field " + repr(field))' "$CODE" "$1" "${2:-}" "$BODY" "$HDRS" "${REQ_PATH-}"
}

# assert_retry_after: a Retry-After header with a positive integer (seconds).
assert_retry_after() {
    local ra
    ra=$(hdr Retry-After)
    [[ "$ra" =~ ^[1-9][0-9]*$ ]] || kq_fail "expected Retry-After: <seconds>, got '$ra'"
}

resource_topic() { echo "$KCQRS_TOPIC_PREFIX.resource.events"; }
ends_sum() { kq_tool kq_offsets sum "$(resource_topic)"; }
ends() { kq_tool kq_offsets ends "$(resource_topic)"; }
dump_topic() { kq_tool kq_offsets dump "$(resource_topic)"; }

# assert_ends_unchanged BEFORE: the resource topic's end offsets sum to BEFORE.
assert_ends_unchanged() {
    local now
    now=$(ends_sum)
    [[ "$now" == "$1" ]] || kq_fail "end offsets moved: $1 -> $now (a rejected command appended)"
}

# dump_of ID: the dumped records of aggregate ID (key prefix "ID/"), in log order.
dump_of() {
    dump_topic | awk -v p="$1/" 'index($3, p) == 1 && length($3) == length(p) + 20'
}

# versions_of ID: "partition version event_type" per record of ID, in offset order.
versions_of() {
    dump_of "$1" | sort -k1,1n -k2,2n | awk '{ n = split($3, a, "/"); print $1, a[n] + 0, $4 }'
}

# new_id: a fresh client-chosen resource id.
new_id() { echo "r-$BATS_TEST_NUMBER-$RANDOM$RANDOM"; }

# create_resource ID NAME: POST and check 201; prints nothing, sets CODE/BODY.
create_resource() {
    req POST /api/v1/resources "{\"id\":\"$1\",\"name\":\"${2:-thing}\"}"
    [[ "$CODE" == 201 ]] || kq_fail "create $1: expected 201, got $CODE: $BODY"
}

# ------------------------------------------------------------------ load with a ledger
# load_start URL LEDGER [N]: N background loops (default 4) each creating
# fresh resources (id load-<loop>-<n>-<random>, Idempotency-Key = id) at URL
# until LEDGER.stop exists, appending "<id> <status>" to LEDGER per command
# (000: no answer, e.g. the connection was reset). load_stop LEDGER ends them.
_load_loop() {
    local url="$1" ledger="$2" w="$3" j=0 id code
    while [[ ! -e "$ledger.stop" ]]; do
        j=$((j + 1))
        id="load-$w-$j-$RANDOM"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
            -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
            -H "Idempotency-Key: $id" --data-binary "{\"id\":\"$id\",\"name\":\"load $w $j\"}" \
            "$url/api/v1/resources") || true
        echo "$id ${code:-000}" >>"$ledger"
        [[ "$code" == 201 ]] || sleep 0.05
    done
}

load_start() {
    local url="$1" ledger="$2" n="${3:-4}" i
    rm -f "$ledger.stop" "$ledger.pids"
    : >>"$ledger"
    for i in $(seq 1 "$n"); do
        _load_loop "$url" "$ledger" "$i" </dev/null >/dev/null 2>&1 3>&- &
        echo $! >>"$ledger.pids"
    done
}

load_stop() {
    local pid
    touch "$1.stop"
    for pid in $(cat "$1.pids"); do
        wait "$pid" 2>/dev/null || true
    done
}

# ledger_check LEDGER: every acknowledged (201) create of the ledger has its
# event in the log exactly once; no ledger id is in the log twice. Prints a
# summary line "acked=A unacked=U logged=L".
ledger_check() {
    dump_topic >"$1.dump" || return 1
    python3 - "$1" "$1.dump" <<'PY'
import collections, sys
ledger, dump = sys.argv[1], sys.argv[2]
codes = collections.defaultdict(list)
for line in open(ledger):
    parts = line.split()
    if len(parts) == 2:
        codes[parts[0]].append(parts[1])
logged = collections.Counter()
for line in open(dump):
    key = line.split(" ", 4)[2]
    agg, _, ver = key.rpartition("/")
    if agg in codes:
        logged[(agg, int(ver))] += 1
bad = []
for (agg, ver), n in logged.items():
    if n != 1 or ver != 1:
        bad.append("%s version %d appears %d times" % (agg, ver, n))
acked = [i for i, c in codes.items() if "201" in c]
for i in acked:
    if logged[(i, 1)] != 1:
        bad.append("%s was acknowledged (201) but is in the log %d times" % (i, logged[(i, 1)]))
print("acked=%d unacked=%d logged=%d" % (len(acked), len(codes) - len(acked), len(logged)))
for b in bad[:20]:
    print("LEDGER MISMATCH: " + b)
sys.exit(1 if bad else 0)
PY
}

# metric NAME_WITH_LABELS: the value of one sample of the instance's /metrics
# ("kcqrs_x_total" or 'kcqrs_x_total{result="committed"}'), 0 when absent.
metric() {
    curl -s --max-time 10 "$CMD_URL/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}
