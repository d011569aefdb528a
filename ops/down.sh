#!/usr/bin/env bash
# ops/down.sh — `make down`: stop what `make up` started. The data in var/ stays;
# `make up` continues from it. (rm -rf var/ after `make down` starts afresh.)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=${KCQRS_VAR_DIR:-$REPO/var}
KQ_PROG="make down"
# shellcheck source=ops/lib.sh
. "$REPO/ops/lib.sh"
# HTTPS as the last `make up` ran it (ops/up.sh), for the health checks.
if [[ "${KCQRS_HTTP_TLS_CERT:-none}" == none && -f "$VAR/https.env" ]]; then
    # shellcheck source=/dev/null
    . "$VAR/https.env"
    kq_tls_init
fi

# Services first (SIGTERM: they finish queued work and snapshot), then the
# servers, in parallel. A service is what answers GET /health on its address
# (var/<name>.addr, else its KCQRS_<X>_ADDR or default) or the live process
# of its pid file: ops/lib.sh kq_service_stop.
stop_service() { # name
    local addr
    addr=$(cat "$VAR/$1.addr" 2>/dev/null || kq_service_addr "$1")
    kq_service_stop "$1" "$addr" "$VAR" "$(kq_service_prog "$1")"
}
rc=0
stop_service kcqrs-worker || rc=1
# the further query hosts of `make up QUERIES=N` (var/kcqrs-query-N.addr)
for f in "$VAR"/kcqrs-query-[0-9]*.addr "$VAR"/kcqrs-projector-[0-9]*.addr; do
    [[ -e "$f" ]] || continue
    n=$(basename "$f" .addr)
    if stop_service "$n"; then rm -f "$f"; else rc=1; fi
done
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
