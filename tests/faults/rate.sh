#!/usr/bin/env bash
# tests/faults/rate.sh — the command rate of the fault campaign's stack without
# faults: a 3-node cluster (min ISR 2), PostgreSQL and kcqrs-commands, -projector,
# -query, -worker started as tests/faults/run.sh starts them, then for each
# CLIENTS the campaign's load (kq_faults load, no rate limit) for SECONDS after
# 5 s of warm-up. Prints per round the acked commands/s, the transactions, the
# mean begin-to-commit time and the mean commands per transaction
# (kcqrs-commands' /metrics), and the load average.
#
#   tests/faults/rate.sh [SECONDS [CLIENTS...]]     (default: 30 24 64 128)
#
# Each client waits for its answer before the next command, so the rate is
# about CLIENTS / answer time; group commit puts the commands that wait into
# one transaction. Environment: FAULTS_KAFKA_NODES (default 3), KCQRS_BIN,
# KCQRS_TOOLS. Everything runs in a temporary directory, removed at the end.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${KCQRS_BIN:-$REPO/build/bin}
TOOLS=${KCQRS_TOOLS:-$REPO/build/tests/tools}
export KCQRS_TOOLS="$TOOLS"
export KQ_KAFKA_START_TIMEOUT=${KQ_KAFKA_START_TIMEOUT:-180}
# shellcheck source=tests/faults/lib.bash
. "$REPO/tests/faults/lib.bash"
KQ_REPO=$REPO
# shellcheck source=tests/e2e/cluster_helpers.bash
. "$REPO/tests/e2e/cluster_helpers.bash"
# shellcheck source=tests/e2e/setup_suite.bash
. "$REPO/tests/e2e/setup_suite.bash" # _kq_free_ports

SECS=${1:-30}
shift || true
[[ $# -gt 0 ]] || set -- 24 64 128
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS [CLIENTS...]]" >&2; exit 2; }
for c in "$@"; do
    [[ "$c" =~ ^[1-9][0-9]*$ && "$c" -le 256 ]] || { echo "$0: CLIENTS must be 1..256, not '$c'" >&2; exit 2; }
done

D=$(mktemp -d /tmp/kcqrs-rate.XXXXXX)
export FL_DIR="$D"
trap 'touch "$D/stop"; fl_stop_everything; rm -rf "$D"' EXIT

fl_start_infra "${FAULTS_KAFKA_NODES:-3}" || exit 1
fl_make_keys || exit 1
fl_start_services || exit 1

# The writer's counters: transactions committed, their commit seconds, commands in batches.
counters() {
    curl -s --max-time 5 "$(fl_url cmd0)/metrics" | awk '
        /^kcqrs_commands_commit_seconds_count / { n = $2 }
        /^kcqrs_commands_commit_seconds_sum / { s = $2 }
        /^kcqrs_commands_batch_size_sum / { b = $2 }
        END { print n + 0, s + 0, b + 0 }'
}
acked() { grep -c ' 20[01] ' "$D/ledger" 2>/dev/null || echo 0; }

printf '%8s %10s %8s %10s %10s %6s\n' clients acked/s txns commit_ms cmds/txn load
for c in "$@"; do
    rm -f "$D/stop" "$D/ledger"
    "$TOOLS/kq_faults" load --urls "$D/urls" --key "$(cat "$D/writer.key")" --ledger "$D/ledger" \
        --stop "$D/stop" --clients "$c" --rate 0 --run "r$c-$RANDOM" >"$D/load.$c.log" 2>&1 &
    lp=$!
    sleep 5
    a0=$(acked)
    read -r n0 s0 b0 <<<"$(counters)"
    sleep "$SECS"
    a1=$(acked)
    read -r n1 s1 b1 <<<"$(counters)"
    touch "$D/stop"
    wait "$lp"
    awk -v c="$c" -v a="$((a1 - a0))" -v t="$SECS" -v n="$((n1 - n0))" -v s0="$s0" -v s1="$s1" \
        -v b0="$b0" -v b1="$b1" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        ms = 0; per = 0
        if (n > 0) { ms = (s1 - s0) * 1000 / n; per = (b1 - b0) / n }
        printf "%8d %10.0f %8d %10.0f %10.1f %6s\n", c, a / t, n, ms, per, l }'
done
