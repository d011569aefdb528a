#!/usr/bin/env bash
# ops/down.sh — `make down`: stop what `make up` started. The data in var/ stays;
# `make up` continues from it. (rm -rf var/ after `make down` starts afresh.)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=${KCQRS_VAR_DIR:-$REPO/var}

# Services first (once they exist), then the servers, in parallel.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$REPO/ops/kafka.sh" stop "$VAR/kafka" >"$tmp/kafka" 2>&1 &
kjob=$!
"$REPO/ops/pg.sh" stop "$VAR/pg" >"$tmp/pg" 2>&1 &
pjob=$!
rc=0
wait "$kjob" || rc=1
wait "$pjob" || rc=1
cat "$tmp/kafka" "$tmp/pg"
exit "$rc"
