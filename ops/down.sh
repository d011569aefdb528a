#!/usr/bin/env bash
# ops/down.sh — `make down`: stop what `make up` started. The data in var/ stays;
# `make up` continues from it. (rm -rf var/ after `make down` starts afresh.)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=${KCQRS_VAR_DIR:-$REPO/var}

# Services first (SIGTERM: they finish queued work and snapshot), then the
# servers, in parallel.
stop_service() { # name
    local pidf="$VAR/$1.pid" pid
    [[ -s "$pidf" ]] || { echo "$1: not running"; return 0; }
    pid=$(cat "$pidf")
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidf"
        echo "$1: not running (stale pid file removed)"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidf"; echo "$1: stopped (pid $pid)"; return 0; }
        sleep 0.1
    done
    echo "$1: pid $pid did not stop within 30 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidf"
    return 1
}
rc=0
stop_service kcqrs-worker || rc=1
stop_service kcqrs-query || rc=1
stop_service kcqrs-projector || rc=1
stop_service kcqrs-commands || rc=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$REPO/ops/kafka.sh" stop "$VAR/kafka" >"$tmp/kafka" 2>&1 &
kjob=$!
"$REPO/ops/pg.sh" stop "$VAR/pg" >"$tmp/pg" 2>&1 &
pjob=$!
wait "$kjob" || rc=1
wait "$pjob" || rc=1
cat "$tmp/kafka" "$tmp/pg"
exit "$rc"
