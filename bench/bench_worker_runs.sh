#!/usr/bin/env bash
# bench/bench_worker_runs.sh — runs per second through kcqrs-worker (issue
# #6): a one-step HTTP workflow against a local receiver (kq_receiver,
# answering 200), beside plain libcurl sending the same number of requests to
# the same receiver in the same run (bench_worker --curl-only).
#
#   bench/bench_worker_runs.sh          prints RESULT lines (bench/run.sh protocol)
#
# One run:
#   1. kcqrs-commands on a fresh topic prefix, the receiver, a workflow with
#      one HTTP step (POST, signed with its secret, body = the trigger payload);
#   2. N runs triggered through POST /api/v1/workflows/{id}/runs (16 client
#      threads; not timed) — the worker is not running yet;
#   3. baseline: bench_worker --curl-only: N signed POSTs, 64 in flight, to the
#      receiver (timed on its own);
#   4. TIMED WINDOW: from the start of the kcqrs-worker process until its
#      /metrics counts N attempt records answered 200 by kcqrs-commands (a 200
#      means the StepAttempted + StepSucceeded + RunSucceeded transaction is
#      committed: every run succeeded in the log). It covers the group join,
#      reading the N RunStarted, N requests to the receiver and N records
#      (each a transaction of kcqrs-commands' group commit);
#   5. check, untimed: kcqrs-audit counts N RunSucceeded in the log.
# RESULT worker.runs (runs/s, baseline worker.runs_curl_alone, target >= 0.5x)
# and worker.runs_from_ready (the same window started at the worker's first
# /ready 200, i.e. without process start and group join).
#
# Environment: BUILD=build, KCQRS_BROKERS (default: start Kafka with
# ops/kafka.sh), BENCH_WORKER_RUNS=N (default 5000; 1000 with BENCH_QUICK=1),
# KCQRS_PARTITIONS (6), KCQRS_WORKER_MAX_RUNS (1000).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    N=${BENCH_WORKER_RUNS:-1000}
else
    N=${BENCH_WORKER_RUNS:-5000}
fi
case "$N" in '' | *[!0-9]* | 0) echo "bench_worker_runs: BENCH_WORKER_RUNS must be a positive integer" >&2; exit 2 ;; esac
export KCQRS_PARTITIONS=${KCQRS_PARTITIONS:-6}
export KCQRS_TOPIC_PREFIX="bench.wk.$(date +%s).$$"
export KCQRS_LOG_LEVEL=${KCQRS_LOG_LEVEL:-warn}
TMP=$(mktemp -d /tmp/kcqrs-bench-wk.XXXXXX)
STARTED_KAFKA=0 CMD_PID= RCV_PID= WK_PID=

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
stop() {
    if [ -n "$1" ]; then
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop "$WK_PID"
    stop "$CMD_PID"
    stop "$RCV_PID"
    if [ "$STARTED_KAFKA" = 1 ]; then ops/kafka.sh stop "$TMP/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
die() { echo "bench_worker_runs: $*" >&2; exit 1; }
now() { date +%s.%N; }

if [ -z "${KCQRS_BROKERS:-}" ]; then
    p1=$(free_port) p2=$(free_port)
    ops/kafka.sh start "$TMP/kafka" "$p1" "$p2" >"$TMP/kafka.log" 2>&1
    STARTED_KAFKA=1
    export KCQRS_BROKERS="127.0.0.1:$p1"
fi

# keys: a writer for the triggers, a worker for the records
export KCQRS_KEYS_FILE="$TMP/keys"
export KCQRS_KEK_FILE="$TMP/kek"
"$BUILD/bin/kcqrs-keys" kek-add --file "$TMP/kek" >/dev/null || die "cannot create a KEK file"
WKEY=$("$BUILD/bin/kcqrs-keys" create --name bench-writer --roles writer)
(umask 077 && "$BUILD/bin/kcqrs-keys" create --name bench-worker --roles worker >"$TMP/worker.key")

# kcqrs-commands
CPORT=$(free_port)
CIPORT=$(free_port)
KCQRS_COMMANDS_ADDR="127.0.0.1:$CPORT" KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$CIPORT" \
    KCQRS_LMDB_DIR="$TMP/lmdb" \
    "$BUILD/bin/kcqrs-commands" >"$TMP/commands.log" 2>&1 &
CMD_PID=$!
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CPORT/ready")" = 200 ] && break
    kill -0 "$CMD_PID" 2>/dev/null || { tail -n 20 "$TMP/commands.log" >&2; die "kcqrs-commands exited"; }
    sleep 0.1
done

# the receiver (its JSON log line per request goes to /dev/null, for both clients alike)
"$BUILD/tests/tools/kq_receiver" --port-file "$TMP/rcv.port" --log /dev/null 200 >/dev/null 2>&1 &
RCV_PID=$!
for _ in $(seq 100); do [ -s "$TMP/rcv.port" ] && break; sleep 0.05; done
[ -s "$TMP/rcv.port" ] || die "kq_receiver did not start"
HOOK="http://127.0.0.1:$(cat "$TMP/rcv.port")/hook"

wf=$(curl -sS -H "Authorization: Bearer $WKEY" -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench\",\"secret\":\"bench-workflow-secret\",\"actions\":[{\"type\":\"http\",\"url\":\"$HOOK\"}]}" \
    -w '\n%{http_code}' "http://127.0.0.1:$CPORT/api/v1/workflows")
[ "$(tail -n1 <<<"$wf")" = 201 ] || die "workflow create answered: $wf"
WF=$(head -n1 <<<"$wf" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

# N triggers, 16 keep-alive clients (not in the timed window; their rate is
# printed as worker.trigger_rate for context: kcqrs-commands' rate for
# one-event commands on this machine at this moment)
tt0=$(now)
python3 - "$CPORT" "$WF" "$WKEY" "$N" <<'PY' || die "triggering the runs failed"
import http.client, json, sys, threading
port, wf, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bad = []
def client(k):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    for i in range(k, n, 16):
        body = json.dumps({"order": "o-%d" % i, "total": 99.5, "ok": True})
        c.request("POST", "/api/v1/workflows/%s/runs" % wf, body,
                  {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 202:
            bad.append(r.status)
ts = [threading.Thread(target=client, args=(k,)) for k in range(16)]
for t in ts: t.start()
for t in ts: t.join()
if bad:
    sys.exit("%d triggers failed, e.g. %s" % (len(bad), bad[:5]))
PY
tt1=$(now)
echo "bench_worker_runs: $N runs triggered" >&2

# baseline: libcurl alone, same receiver, same number of requests
base=$("$BUILD/bench/bench_worker" --curl-only "$HOOK" --requests "$N" --concurrency 64) ||
    die "bench_worker --curl-only failed"
echo "$base"
CURL_RATE=$(awk '/^CURL_RATE/ { print $2 }' <<<"$base")

# the worker, timed
WPORT=$(free_port)
t0=$(now)
KCQRS_WORKER_ADDR="127.0.0.1:$WPORT" KCQRS_WORKER_KEY_FILE="$TMP/worker.key" \
    KCQRS_WORKER_COMMANDS_URL="http://127.0.0.1:$CIPORT" KCQRS_WORKER_ALLOW_PRIVATE=1 \
    "$BUILD/bin/kcqrs-worker" >"$TMP/worker.log" 2>&1 &
WK_PID=$!
t_ready=
ok=0
deadline=$(($(date +%s) + 600))
while :; do
    kill -0 "$WK_PID" 2>/dev/null || { tail -n 20 "$TMP/worker.log" >&2; die "kcqrs-worker exited"; }
    if [ -z "$t_ready" ] &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WPORT/ready")" = 200 ]; then
        t_ready=$(now)
    fi
    ok=$(curl -s "http://127.0.0.1:$WPORT/metrics" |
        awk '$1 == "kcqrs_worker_records_total{result=\"ok\"}" { print $2 }') || ok=0 # not listening yet
    [ "${ok:-0}" -ge "$N" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "only ${ok:-0} of $N runs recorded after 600 s"
    sleep 0.02
done
t1=$(now)
[ -n "$t_ready" ] || t_ready=$t0
curl -s "http://127.0.0.1:$WPORT/metrics" | grep -E '^kcqrs_worker_(records|attempt|runs|transfers)' || true
stop "$WK_PID"
WK_PID=

# check: N RunSucceeded in the log
succ=$("$BUILD/bin/kcqrs-audit" query --aggregate-type run --event-type RunSucceeded | wc -l)
[ "$succ" -eq "$N" ] || die "$succ RunSucceeded in the log for $N runs"
grep -E ' (ERROR|WARN) ' "$TMP/worker.log" | head -n 5 || true

python3 - "$N" "$t0" "$t_ready" "$t1" "$CURL_RATE" "$tt0" "$tt1" <<'PY'
import sys
n, t0, tr, t1, curl, tt0, tt1 = int(sys.argv[1]), *map(float, sys.argv[2:8])
print(f"RESULT name=worker.trigger_rate unit=runs/s value={n / (tt1 - tt0):.1f} clients=16")
print(f"RESULT name=worker.runs_curl_alone unit=req/s value={curl:.1f} requests={n} concurrency=64")
print(f"RESULT name=worker.runs unit=runs/s value={n / (t1 - t0):.1f} baseline=worker.runs_curl_alone "
      f"target=>=0.5x runs={n} seconds={t1 - t0:.3f}")
print(f"RESULT name=worker.runs_from_ready unit=runs/s value={n / (t1 - tr):.1f} "
      f"baseline=worker.runs_curl_alone runs={n} seconds={t1 - tr:.3f}")
PY
