#!/usr/bin/env bash
# tests/faults/run.sh — the fault campaign (issue #13 item 5): `make test-faults`
# (FAULTS_DURATION of faults, default 1800 s, the whole run within 40 minutes) and
# `make test-faults-short` (FAULTS_SHORT=1: 120 s of faults, under 5 minutes; in CI).
#
# What it does, in a private directory (mktemp -d /tmp/kcqrs-faults.XXXXXX):
#   1. starts Kafka (a 3-node KRaft cluster when the tree can, else one node:
#      FAULTS_KAFKA_NODES), PostgreSQL, and kcqrs-commands, -projector, -query and
#      -worker on free ports, topics with replication factor 3 and min ISR 2 on a
#      cluster;
#   2. starts the load (tests/tools/kq_faults load: several clients, each command
#      retried with its Idempotency-Key, every attempt in the ledger) and the ISR
#      recorder (kq_faults isr: the event partitions' leader and ISR over time);
#   3. injects faults in two lanes that run side by side until the time is up:
#      services: kill -9 of kcqrs-commands and restart; a zombie writer (SIGSTOP the
#        writer, start another on other port and LMDB directory, SIGCONT the first,
#        which must be fenced: /ready 503, kcqrs_commands_fenced 1, the clients'
#        requests to it answered 503 not_writer); kill -9 of the projector at its
#        failpoints (KCQRS_FAILPOINT); PostgreSQL restart; the projector's LMDB map
#        filling up (a restart with KCQRS_LMDB_MAP_MB just above the file's size,
#        until it logs MDB_MAP_FULL; then the normal map again);
#      brokers (cluster only): kill -9 of the leader, or of a follower, of a busy
#        partition and restart; SIGSTOP of such a leader for longer than the
#        broker session timeout, then SIGCONT; two brokers killed at once. After
#        each, the next waits until every partition is fully in sync again;
#   4. stops the load, lets the projector catch up (--exit-at-end), runs
#      kcqrs-replay verify --target all and kcqrs-audit verify-chain, and
#      kq_faults check, which reads the topics directly and prints the table
#      (sent/acked/failed, faults by kind, lost, duplicates, 2xx under min ISR,
#      unreadable from the query API, longest window without a 2xx);
#   5. checks the checker: the same check on a ledger with one made-up 2xx (a
#      command that is not in the log, its token pointing at another record) and
#      an ISR record with one partition below min ISR throughout must fail,
#      naming 1 lost, 1 bad token and at least one 2xx under min ISR.
# Exit status: kq_faults check's (1 on any loss, duplicate, gap, 2xx under min
# ISR, unreadable command, verify or chain failure), 1 when a zombie writer took
# the writer role back or stayed ready beside the new one, 1 when the setup failed.
#
# Environment: FAULTS_SHORT=1, FAULTS_DURATION (seconds of faults), FAULTS_CLIENTS
# (default 128: each client waits for its answer, so the rate is about
# clients / answer time; kcqrs-commands runs with KCQRS_HTTP_MAX_PER_IP=0, as
# every client comes from 127.0.0.1), FAULTS_RATE (commands/s in all, default
# 1000; 0: no limit), FAULTS_KAFKA_NODES
# (3 or 1; default 3 when the cluster helper exists), FAULTS_KEEP=1 keeps the
# directory (also kept when the campaign fails), FAULTS_SEED (bash RANDOM seed),
# KCQRS_BIN, KCQRS_TOOLS.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${KCQRS_BIN:-$REPO/build/bin}
TOOLS=${KCQRS_TOOLS:-$REPO/build/tests/tools}
export KCQRS_TOOLS="$TOOLS"
# a busy 2-core machine starts a JVM slowly; three of them slower
export KQ_KAFKA_START_TIMEOUT=${KQ_KAFKA_START_TIMEOUT:-180}
# shellcheck source=tests/faults/lib.bash
. "$REPO/tests/faults/lib.bash"
KQ_REPO=$REPO
# shellcheck source=tests/e2e/cluster_helpers.bash
. "$REPO/tests/e2e/cluster_helpers.bash"
# shellcheck source=tests/e2e/setup_suite.bash
. "$REPO/tests/e2e/setup_suite.bash" # _kq_free_ports

if [[ "${FAULTS_SHORT:-0}" == 1 ]]; then
    DURATION=${FAULTS_DURATION:-120}
else
    DURATION=${FAULTS_DURATION:-1800}
fi
CLIENTS=${FAULTS_CLIENTS:-128}
RATE=${FAULTS_RATE:-1000}
RANDOM=${FAULTS_SEED:-$$}
NODES=${FAULTS_KAFKA_NODES:-$(fl_cluster_supported && echo 3 || echo 1)}

D=$(mktemp -d /tmp/kcqrs-faults.XXXXXX)
export FL_DIR="$D"
T0=$(date +%s)
fl_say "directory $D, $NODES Kafka node(s), $DURATION s of faults, $CLIENTS clients at <= $RATE commands/s"

cleanup() {
    local rc=$?
    trap '' INT TERM HUP
    touch "$D/stop" "$D/faults.end"
    fl_stop_everything
    if [[ "${FAULTS_KEEP:-0}" == 1 || -e "$D/keep" ]]; then
        fl_say "kept $D"
    else
        rm -rf "$D"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ------------------------------------------------------------------ 1. bring-up
fl_start_infra "$NODES" || { touch "$D/keep"; fl_say "setup failed"; exit 1; }
fl_make_keys || { touch "$D/keep"; exit 1; }
fl_start_services || { touch "$D/keep"; fl_say "services did not start"; exit 1; }
fl_say "stack up in $(($(date +%s) - T0)) s"

# ------------------------------------------------------------------ 2. load and recorder
"$TOOLS/kq_faults" isr --out "$D/isr" --stop "$D/stop" >"$D/isr.log" 2>&1 &
echo $! >"$D/isr.pid"
fl_fault_log "$(fl_ms)" "$(fl_ms)" load_start
"$TOOLS/kq_faults" load --urls "$D/urls" --key "$(cat "$D/writer.key")" --ledger "$D/ledger" \
    --stop "$D/stop" --clients "$CLIENTS" --rate "$RATE" --run "f$RANDOM" --big "$D/big" >"$D/load.log" 2>&1 &
echo $! >"$D/load.pid"
sleep 3

# ------------------------------------------------------------------ 3. faults
END=$(($(date +%s) + DURATION))
fl_lane_services "$END" >"$D/lane-services.log" 2>&1 &
LANE_S=$!
LANE_B=
if [[ "$NODES" -ge 3 ]]; then
    fl_lane_brokers "$END" >"$D/lane-brokers.log" 2>&1 &
    LANE_B=$!
fi
while kill -0 "$LANE_S" 2>/dev/null || { [[ -n "$LANE_B" ]] && kill -0 "$LANE_B" 2>/dev/null; }; do
    sleep 5
    fl_say "$(($(date +%s) - T0)) s: $(wc -l <"$D/faults" 2>/dev/null || echo 0) fault lines, $(grep -c ' 20[01] ' "$D/ledger" 2>/dev/null || echo 0) 2xx so far"
    if [[ $(date +%s) -gt $((END + 300)) ]]; then
        fl_say "a lane did not finish within 300 s of the end; stopping it"
        kill "$LANE_S" $LANE_B 2>/dev/null
        break
    fi
done
wait "$LANE_S" 2>/dev/null
[[ -n "$LANE_B" ]] && wait "$LANE_B" 2>/dev/null
cat "$D/lane-services.log" "$D/lane-brokers.log" 2>/dev/null | grep -E '^(fault|FAIL|warn)' | tail -n 400 >"$D/lanes.summary"
grep -E '^(FAIL|warn)' "$D/lanes.summary" | head -n 20

# ------------------------------------------------------------------ 4. checks
fl_heal_all
sleep 3
fl_fault_log "$(fl_ms)" "$(fl_ms)" load_stop
touch "$D/stop"
wait "$(cat "$D/load.pid")" 2>/dev/null
cat "$D/load.log"
wait "$(cat "$D/isr.pid")" 2>/dev/null

fl_say "catching up the projector and verifying"
fl_proj_stop
fl_env timeout 300 "$BIN/kcqrs-projector" --target all --exit-at-end >>"$D/projector.log" 2>&1 ||
    fl_say "projector catch-up failed (see projector.log)"
verify=FAILED
if fl_env timeout 600 "$BIN/kcqrs-replay" verify --target all >"$D/verify.log" 2>&1; then
    verify=ok
fi
tail -n 5 "$D/verify.log"
chain=BROKEN
if fl_env timeout 300 "$BIN/kcqrs-audit" verify-chain >"$D/chain.log" 2>&1; then
    chain=ok
fi
tail -n 3 "$D/chain.log"

rc=0
fl_env "$TOOLS/kq_faults" check --ledger "$D/ledger" --isr "$D/isr" --faults "$D/faults" \
    --query "$(fl_url query)" --key "$(cat "$D/reader.key")" \
    --min-isr "$([[ $NODES -ge 3 ]] && echo 2 || echo 1)" --verify "$verify" --chain "$chain" \
    | tee "$D/report" || rc=1
[[ -s "$D/report" ]] || rc=1
# What only the driver saw: zombie writers that were not fenced. A zombie that
# took the writer role back (or called itself ready beside the new writer) is a
# failure like a lost command, not a figure to read: the campaign fails on it.
retook=$(cat "$D/zombie.retook" 2>/dev/null | wc -l)
zready=$(cat "$D/zombie.ready" 2>/dev/null | wc -l)
printf '| %-44s | %12s |\n' "zombie writers that took the role back" "$retook" \
    "zombie writers ready while the other was too" "$zready" | tee -a "$D/report"
if [[ $retook -ne 0 || $zready -ne 0 ]]; then
    fl_say "FAILED: $retook zombie writer(s) took the role back, $zready called themselves ready beside the writer"
    rc=1
fi

# 5. the checker must see a loss and a 2xx under min ISR when there is one
fl_selftest() {
    local tok line t
    line=$(awk '$8 ~ /^20[01]$/ && $10 != "-" { print; exit }' "$D/ledger")
    [[ -n "$line" ]] || return 1
    read -r -a f <<<"$line"
    tok=${f[9]}
    t=$(python3 -c "import base64,sys; s=sys.argv[1][3:]; print(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4)).decode())" "$tok")
    cp "$D/ledger" "$D/ledger.selftest"
    echo "${f[0]} ${f[1]} 99 0 1 create never-written-$RANDOM 201 1 $tok" >>"$D/ledger.selftest"
    { echo "1 ${t%:*} 1 1 3"; echo "$(($(fl_ms) + 1000000)) ${t%:*} 1 3 3"; } |
        awk '{ sub(/:/, " ", $2); print }' >"$D/isr.selftest"
    "$TOOLS/kq_faults" check --ledger "$D/ledger.selftest" --isr "$D/isr.selftest" \
        --faults "$D/faults" --query "$(fl_url query)" --key "$(cat "$D/reader.key")" \
        --min-isr 2 --verify ok --chain ok >"$D/report.selftest" 2>&1
    [[ $? -eq 1 ]] &&
        grep -qE '^\| lost \(acked, not in the log\) +\| +1 \|' "$D/report.selftest" &&
        grep -qE '^\| tokens not pointing at their record +\| +1 \|' "$D/report.selftest" &&
        grep -qE '^\| 2xx under min ISR +\| +[1-9][0-9]* \|' "$D/report.selftest"
}
if fl_selftest; then
    fl_say "checker self-test: a made-up loss and a 2xx under min ISR are found"
else
    fl_say "checker self-test FAILED (see $D/report.selftest)"
    rc=1
fi
fl_say "fault lanes: $(grep -c '^fault' "$D/lanes.summary") faults logged, $(grep -c '^warn' "$D/lanes.summary") warnings"
fl_say "done in $(($(date +%s) - T0)) s"
[[ $rc -eq 0 ]] || touch "$D/keep"
exit $rc
