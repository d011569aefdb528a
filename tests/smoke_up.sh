#!/usr/bin/env bash
# tests/smoke_up.sh — what a user does first, checked in CI: `make up QUERIES=2` on this
# machine, one command through the command API, read back through both query
# hosts with its consistency token, kcqrs-worker's /health, `make status --json`
# (every service up, the second projector's PostgreSQL target a standby),
# `make down`. Exit 0 when every step worked.
# Uses the default ports (Kafka 9092/9093, PostgreSQL 5432, 8080-8083, 8181-8182) and
# var/ (KCQRS_VAR_DIR), like `make up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "smoke_up: $*" >&2; exit 1; }
trap 'make down >/dev/null 2>&1 || true' EXIT

make up QUERIES=2
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
got2=$(curl -sS -w '\n%{http_code}' "http://127.0.0.1:8181/api/v1/resources/$id" \
    -H "Authorization: Bearer $KEY" -H "X-Consistency-Token: $token")
[ "$(tail -n1 <<<"$got2")" = 200 ] || fail "query host 2 answered: $got2"
[ "$(head -n1 <<<"$got2")" = "$(head -n1 <<<"$got")" ] || fail "the query hosts differ: $got / $got2"
st=$(ops/status.sh --json) || fail "make status: not every service is up: $st"
python3 -c 'import json, sys
s = {x["name"]: x for x in json.loads(sys.argv[1])["services"]}
assert {"kcqrs-commands", "kcqrs-query", "kcqrs-query-2", "kcqrs-projector", "kcqrs-projector-2", "kcqrs-worker", "kafka", "postgresql"} <= set(s), s
assert all(x["health"] == "up" and x["pid"] for x in s.values()), s
assert s["kcqrs-projector"]["targets"] == {"lmdb": "active", "pg": "active"}, s
assert s["kcqrs-projector-2"]["targets"] == {"lmdb": "active", "pg": "standby"}, s' "$st" ||
    fail "make status: $st"
echo "smoke_up: make up QUERIES=2, create, read-your-write through both query hosts, worker health, make status: ok"
