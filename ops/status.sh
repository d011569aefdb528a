#!/usr/bin/env bash
# ops/status.sh — `make status`: every service `make up` started (var/*.addr,
# so the further query hosts of `make up QUERIES=N` too), Kafka and
# PostgreSQL, each with its URL, pid, role and health.
#
#   ops/status.sh [--json]
#
# A kcqrs service is "up" when GET /health answers on its address and
# "ready" when GET /ready does (else the reason /ready gives); its pid is
# the live process of its pid file, else the one listening on its port. The
# projector's role comes from its /metrics: for each target "active" (open
# and applying), "standby" (PostgreSQL: another projector holds the schema's
# lock) or "down". --json prints one JSON object
# {"services":[{"name","program","url","pid","role","health","ready",
# "reason","targets"}]} for scripts (health: up|down; pid and reason null
# when unknown; targets only for projectors). Exit status 0 when every
# listed service is up, 1 otherwise, 2 on usage errors.
#
# Environment: KCQRS_VAR_DIR (default <repo>/var), and HTTPS as `make up`
# left it (var/https.env).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KQ_PROG="make status"
# shellcheck source=ops/lib.sh
. "$REPO/ops/lib.sh"
VAR=${KCQRS_VAR_DIR:-$REPO/var}
JSON=0
case "${1:-}" in
--json) JSON=1 ;;
"") ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: ops/status.sh [--json]" >&2
    exit 2
    ;;
esac
if [[ "${KCQRS_HTTP_TLS_CERT:-none}" == none && -f "$VAR/https.env" ]]; then
    # shellcheck source=/dev/null
    . "$VAR/https.env"
fi
kq_tls_init

# The services: the four of `make up`, then every further instance with an
# address file (kcqrs-query-2, kcqrs-projector-2, ...).
names=(kcqrs-commands kcqrs-projector kcqrs-query kcqrs-worker)
for f in "$VAR"/kcqrs-*-[0-9]*.addr; do
    [[ -e "$f" ]] && names+=("$(basename "$f" .addr)")
done

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for name in "${names[@]}"; do
    prog=$(kq_service_prog "$name")
    addr=$(cat "$VAR/$name.addr" 2>/dev/null || kq_service_addr "$name" 2>/dev/null) || continue
    pid=$(cat "$VAR/$name.pid" 2>/dev/null || true)
    kq_pid_live "$pid" "$prog" || pid=$(kq_listener_pid "$addr")
    kq_pid_live "$pid" "$prog" || pid=""
    health=down ready="" metrics=""
    if kq_health "$addr"; then
        health=up
        ready=$(kq_curl -s --max-time 2 -w '\n%{http_code}' "$(kq_url "$addr")/ready" 2>/dev/null || true)
        [[ "$prog" == kcqrs-projector ]] &&
            metrics=$(kq_curl -s --max-time 2 "$(kq_url "$addr")/metrics" 2>/dev/null |
                grep -E '^kcqrs_projector_(connected|standby)\{' || true)
    fi
    # one record per service: fields separated by \x1f, multi-line values escaped by python below
    printf '%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1e' "$name" "$prog" "$(kq_url "$addr")" \
        "$pid" "$health" "$ready" "$metrics" >>"$tmp"
done
# Kafka and PostgreSQL: their ports as `make up` recorded them.
kports=$(sed -n 's/^ports=//p' "$VAR/kafka/cluster.conf" 2>/dev/null ||
    sed -n 's|^advertised.listeners=[A-Z_]*://127.0.0.1:||p' "$VAR/kafka/server.properties" 2>/dev/null || true)
for p in ${kports//,/ }; do
    pid=$(kq_listener_pid "127.0.0.1:$p")
    printf '%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f\x1f\x1e' "kafka" "kafka" "kafka://127.0.0.1:$p" "$pid" \
        "$([[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] && echo up || echo down)" >>"$tmp"
done
pgport=$(sed -n 's/^port = //p' "$VAR/pg/kcqrs.conf" 2>/dev/null || true)
if [[ -n "$pgport" ]]; then
    pid=$(kq_listener_pid "127.0.0.1:$pgport")
    printf '%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f\x1f\x1e' "postgresql" "postgresql" \
        "postgresql://127.0.0.1:$pgport/kcqrs" "$pid" \
        "$([[ -n "$(ss -Hltn "sport = :$pgport" 2>/dev/null)" ]] && echo up || echo down)" >>"$tmp"
fi

python3 - "$tmp" "$JSON" <<'PY'
import json, re, sys

ROLES = {"kcqrs-commands": "writer (every partition)", "kcqrs-query": "query host",
         "kcqrs-worker": "workflow worker", "kafka": "broker", "postgresql": "database"}
out = []
for rec in open(sys.argv[1], encoding="utf-8").read().split("\x1e"):
    if not rec:
        continue
    name, prog, url, pid, health, ready, metrics = rec.split("\x1f")
    s = {"name": name, "program": prog, "url": url, "pid": int(pid) if pid else None,
         "health": health, "ready": None, "reason": None}
    if ready:
        body, _, code = ready.rpartition("\n")
        s["ready"] = code == "200"
        if code != "200":
            try:
                d = json.loads(body)
                s["reason"] = d.get("reason") or d.get("detail") or d.get("status") or body
            except ValueError:
                s["reason"] = body.strip() or f"HTTP {code}"
    elif prog.startswith("kcqrs-"):
        s["ready"] = False
    if prog == "kcqrs-projector":
        targets = {}
        for m in re.finditer(r'^kcqrs_projector_(connected|standby)\{target="([a-z]+)"\} (\d+)', metrics, re.M):
            t = targets.setdefault(m.group(2), {})
            t[m.group(1)] = m.group(3) == "1"
        s["targets"] = {t: "standby" if v.get("standby") else "active" if v.get("connected") else "down"
                        for t, v in sorted(targets.items())}
        s["role"] = "projector: " + (", ".join(f"{t} {st}" for t, st in s["targets"].items()) or "not answering")
    else:
        s["role"] = ROLES.get(prog, prog)
    out.append(s)
if sys.argv[2] == "1":
    print(json.dumps({"services": out}, indent=2))
else:
    print(f"{'name':<20} {'url':<34} {'pid':>7}  {'health':<6} role")
    for s in out:
        h = s["health"]
        if h == "up" and s["ready"] is False:
            h = "up, not ready: " + str(s["reason"])
        print(f"{s['name']:<20} {s['url']:<34} {s['pid'] or '-':>7}  {h:<6} {s['role']}")
sys.exit(0 if all(s["health"] == "up" for s in out) else 1)
PY
