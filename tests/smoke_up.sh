#!/usr/bin/env bash
# tests/smoke_up.sh — what a user does first, checked in CI: `make up` on this
# machine, one command through the command API, read back through the query
# API with its consistency token, kcqrs-worker's /health, `make down`. Exit 0 when every step worked.
# Uses the default ports (Kafka 9092/9093, PostgreSQL 5432, 8080-8082) and
# var/ (KCQRS_VAR_DIR), like `make up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "smoke_up: $*" >&2; exit 1; }
trap 'make down >/dev/null 2>&1 || true' EXIT

make up
VAR=${KCQRS_VAR_DIR:-var}
KEY=$(cat "$VAR/admin.key")
id="smoke-$(date +%s)-$$"
hdr=$(mktemp)
body=$(curl -sS -D "$hdr" -o - -w '\n%{http_code}' -XPOST http://127.0.0.1:8080/api/v1/resources \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"id\":\"$id\",\"name\":\"smoke test\"}")
[ "$(tail -n1 <<<"$body")" = 201 ] || fail "create answered: $body"
token=$(sed -n 's/^[Xx]-[Cc]onsistency-[Tt]oken: *\([^[:space:]]*\).*/\1/p' "$hdr")
rm -f "$hdr"
[ -n "$token" ] || fail "no X-Consistency-Token in the create's answer"
got=$(curl -sS -w '\n%{http_code}' "http://127.0.0.1:8081/api/v1/resources/$id" \
    -H "Authorization: Bearer $KEY" -H "X-Consistency-Token: $token")
[ "$(tail -n1 <<<"$got")" = 200 ] || fail "query answered: $got"
python3 -c 'import json, sys; d = json.loads(sys.argv[1]); assert d["id"] == sys.argv[2] and d["name"] == "smoke test" and d["version"] == 1, d' \
    "$(head -n1 <<<"$got")" "$id" || fail "query returned another resource: $got"
wh=$(curl -sS -w '\n%{http_code}' "http://${KCQRS_WORKER_ADDR:-127.0.0.1:8083}/health") ||
    fail "kcqrs-worker /health did not answer"
[ "$(tail -n1 <<<"$wh")" = 200 ] || fail "kcqrs-worker /health answered: $wh"
echo "smoke_up: make up, create, read-your-write through the query API, worker health: ok"
