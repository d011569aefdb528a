#!/usr/bin/env bash
# ops/up.sh — `make up`: start the local stack in var/ and print where it listens.
#
# Starts (in parallel) Kafka (ops/kafka.sh: a single node, or with
# KCQRS_KAFKA_NODES=3 a cluster of three) and PostgreSQL (ops/pg.sh), then creates the event topics (tests/tools/kq_topics create,
# which uses the same kq_kafka_ensure_topics() as the services), then the
# services in the background (kcqrs-commands, kcqrs-projector, kcqrs-query,
# kcqrs-worker: pid in var/<name>.pid, log in var/<name>.log), waiting until
# each answers /ready. The worker records attempts with a key of role worker
# kept in var/worker.key (created once, like the admin key). Running it again
# while everything runs is harmless: each part says it is already running. A
# service counts as running when it answers GET /health on its address, not
# because of a pid file: after a crash (kill -9) `make up` starts it again at
# once, even while the dead pid is still an unreaped zombie. Data
# lives in var/ (git-ignored) and survives `make down` / `make up`.
# `make up` has already run ops/install-deps.sh and built everything.
#
# Kafka: KCQRS_KAFKA_NODES=3 (make up KAFKA_NODES=3) runs three KRaft nodes with
# brokers on KCQRS_KAFKA_PORT, +2, +4 (9092, 9094, 9096) and controllers on
# KCQRS_KAFKA_CONTROLLER_PORT, +2, +4 (9093, 9095, 9097); topics get replication
# factor 3 and min.insync.replicas 2, every service all three bootstrap servers.
# KCQRS_KAFKA_SECURITY=sasl_ssl (make up KAFKA_SECURITY=sasl_ssl) gives the
# broker(s) a SASL_SSL listener (SCRAM-SHA-512, certificates made with openssl)
# and every service KCQRS_KAFKA_PROPERTIES=var/kafka/client.properties. Both are
# fixed when var/kafka is first created; later runs reuse what is there (and
# refuse a different request: `make down && rm -rf var` starts afresh).
#
# HTTPS: with KCQRS_HTTP_TLS_CERT and KCQRS_HTTP_TLS_KEY set every service
# speaks HTTPS, and the health checks and printed URLs use https, trusting
# KCQRS_HTTP_TLS_CA (default: the system's CAs). KCQRS_HTTPS=1 (make up
# HTTPS=1) without a certificate makes a local CA and a certificate for
# 127.0.0.1/localhost in var/tls (ops/lib.sh kq_tls_self_signed, once) and
# uses them. The HTTPS settings are remembered in var/https.env, so later
# `make up` and `make down` use them too; KCQRS_HTTPS=0 (make up HTTPS=0)
# turns HTTPS off again.
#
# Query hosts: KCQRS_QUERIES=N (make up QUERIES=N, default 1, at most 9) runs
# N query hosts: host 1 is kcqrs-query on KCQRS_QUERY_ADDR beside
# kcqrs-projector (--target all, LMDB in KCQRS_LMDB_DIR); host i >= 2 is
# kcqrs-query-i on the query port + 100*(i-1) (8181, 8281, ...) beside
# kcqrs-projector-i (--target all, admin on the projector port + 100*(i-1),
# LMDB in var/lmdb-i): its LMDB target is its own, its PostgreSQL target a
# standby of host 1's (it takes over if that one dies). `make status`
# (ops/status.sh) lists them.
#
# Environment (defaults):
#   KCQRS_HTTPS= (remembered; 0 or 1) KCQRS_HTTP_TLS_CERT/KEY=none KCQRS_HTTP_TLS_CA=system
#   KCQRS_KAFKA_NODES=1 KCQRS_KAFKA_SECURITY=plaintext
#   KCQRS_KAFKA_PORT=9092 KCQRS_KAFKA_CONTROLLER_PORT=9093 KCQRS_PG_PORT=5432
#   KCQRS_COMMANDS_ADDR=127.0.0.1:8080 KCQRS_COMMANDS_INTERNAL_ADDR=127.0.0.1:8090
#   KCQRS_PROJECTOR_ADDR=127.0.0.1:8082
#   KCQRS_QUERY_ADDR=127.0.0.1:8081 KCQRS_WORKER_ADDR=127.0.0.1:8083
#   KCQRS_WORKER_KEY_FILE=<var>/worker.key KCQRS_LMDB_DIR=<var>/lmdb
#   KCQRS_VAR_DIR=<repo>/var, and the services' own settings (KCQRS_TOPIC_PREFIX,
#   KCQRS_PARTITIONS, ...) for topic creation.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KQ_PROG="make up"
# shellcheck source=ops/lib.sh
. "$REPO/ops/lib.sh"
VAR=${KCQRS_VAR_DIR:-$REPO/var}
KPORT=${KCQRS_KAFKA_PORT:-9092}
CPORT=${KCQRS_KAFKA_CONTROLLER_PORT:-9093}
PGPORT=${KCQRS_PG_PORT:-5432}
TOOLS=${KCQRS_TOOLS:-$REPO/build/tests/tools}
BIN=${KCQRS_BIN:-$REPO/build/bin}

KDIR="$VAR/kafka"
# A cluster already in var/kafka keeps its node count unless told otherwise.
NODES=${KCQRS_KAFKA_NODES:-}
if [[ -z "$NODES" ]]; then
    NODES=$(sed -n 's/^nodes=//p' "$KDIR/cluster.conf" 2>/dev/null || true)
    NODES=${NODES:-1}
fi
[[ "$NODES" =~ ^[1-9]$ ]] || die "KCQRS_KAFKA_NODES='$NODES' is not a node count (1 or 3)"
if [[ "$NODES" == 1 && -f "$KDIR/cluster.conf" ]]; then
    die "$KDIR holds a cluster of $(sed -n 's/^nodes=//p' "$KDIR/cluster.conf") nodes; 'make down && rm -rf $VAR' to start afresh with one node"
fi
if [[ "$NODES" != 1 && -f "$KDIR/server.properties" ]]; then
    die "$KDIR holds a single-node Kafka; 'make down && rm -rf $VAR' to start afresh with a cluster (or KCQRS_VAR_DIR=another directory)"
fi
SECURITY=${KCQRS_KAFKA_SECURITY:-}
if [[ -n "$SECURITY" ]]; then
    export KQ_KAFKA_SECURITY="$SECURITY"
fi
KAFKA_ARGS=("$KPORT" "$CPORT")
if [[ "$NODES" != 1 ]]; then
    kp= cp=
    for ((i = 0; i < NODES; i++)); do
        kp+="${kp:+,}$((KPORT + 2 * i))"
        cp+="${cp:+,}$((CPORT + 2 * i))"
    done
    KAFKA_ARGS=("$kp" "$cp")
    # Topics and the services: three copies, a write acknowledged on two.
    export KCQRS_REPLICATION_FACTOR=${KCQRS_REPLICATION_FACTOR:-$((NODES < 3 ? NODES : 3))}
    export KCQRS_MIN_INSYNC_REPLICAS=${KCQRS_MIN_INSYNC_REPLICAS:-$((NODES < 3 ? 1 : 2))}
fi

QUERIES=${KCQRS_QUERIES:-1}
[[ "$QUERIES" =~ ^[1-9]$ ]] || die "KCQRS_QUERIES='$QUERIES' is not a number of query hosts (1-9)"
mkdir -p "$VAR"

# HTTPS: the operator's certificate, else var/tls for HTTPS=1, else what the
# last `make up` used (var/https.env), unless HTTPS=0.
HTTPS_ENV="$VAR/https.env"
HTTPS=${KCQRS_HTTPS:-}
[[ -z "$HTTPS" || "$HTTPS" == 0 || "$HTTPS" == 1 ]] || die "KCQRS_HTTPS='$HTTPS' must be 0 or 1"
if [[ "${KCQRS_HTTP_TLS_CERT:-none}" == none ]]; then
    if [[ "$HTTPS" == 1 ]]; then
        kq_tls_self_signed "$VAR/tls" || die "making the local CA and certificate in $VAR/tls failed"
        export KCQRS_HTTP_TLS_CERT="$VAR/tls/server.pem" KCQRS_HTTP_TLS_KEY="$VAR/tls/server.key"
        export KCQRS_HTTP_TLS_CA="$VAR/tls/ca.pem"
    elif [[ -z "$HTTPS" && -f "$HTTPS_ENV" ]]; then
        # shellcheck source=/dev/null
        . "$HTTPS_ENV"
    fi
fi
if [[ "$HTTPS" == 0 ]]; then
    unset KCQRS_HTTP_TLS_CERT KCQRS_HTTP_TLS_KEY
    rm -f "$HTTPS_ENV"
elif [[ "${KCQRS_HTTP_TLS_CERT:-none}" != none ]]; then
    [[ -r "$KCQRS_HTTP_TLS_CERT" && -r "${KCQRS_HTTP_TLS_KEY:-}" ]] ||
        die "KCQRS_HTTP_TLS_CERT='$KCQRS_HTTP_TLS_CERT' and KCQRS_HTTP_TLS_KEY='${KCQRS_HTTP_TLS_KEY:-}' must both be readable files"
    export KCQRS_HTTP_TLS_CERT KCQRS_HTTP_TLS_KEY KCQRS_HTTP_TLS_CA=${KCQRS_HTTP_TLS_CA:-system}
    printf 'export KCQRS_HTTP_TLS_CERT=%q KCQRS_HTTP_TLS_KEY=%q KCQRS_HTTP_TLS_CA=%q\n' \
        "$KCQRS_HTTP_TLS_CERT" "$KCQRS_HTTP_TLS_KEY" "$KCQRS_HTTP_TLS_CA" >"$HTTPS_ENV"
fi
kq_tls_init

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$REPO/ops/kafka.sh" start "$KDIR" "${KAFKA_ARGS[@]}" >"$tmp/kafka" 2>&1 &
kjob=$!
"$REPO/ops/pg.sh" start "$VAR/pg" "$PGPORT" >"$tmp/pg" 2>&1 &
pjob=$!
krc=0 prc=0
wait "$kjob" || krc=$?
wait "$pjob" || prc=$?
cat "$tmp/kafka" "$tmp/pg"
if [[ $krc -ne 0 || $prc -ne 0 ]]; then
    echo "make up: failed to start $([[ $krc -ne 0 ]] && echo Kafka)$([[ $krc -ne 0 && $prc -ne 0 ]] && echo ' and ')$([[ $prc -ne 0 ]] && echo PostgreSQL) (see above); 'make down' stops what did start" >&2
    exit 1
fi

# The ports actually in use (an already running instance keeps the ports it
# was started with).
if [[ -f "$KDIR/cluster.conf" ]]; then
    KPORTS=$(sed -n 's/^ports=//p' "$KDIR/cluster.conf")
    CPORTS=$(sed -n 's/^controller_ports=//p' "$KDIR/cluster.conf")
else
    KPORTS=$(sed -n 's|^advertised.listeners=[A-Z_]*://127.0.0.1:||p' "$KDIR/server.properties")
    CPORTS=$(sed -n 's|^controller.quorum.voters=1@127.0.0.1:||p' "$KDIR/server.properties")
fi
PGPORT=$(sed -n 's/^port = //p' "$VAR/pg/kcqrs.conf")
BROKERS=$(echo "$KPORTS" | sed 's/\([0-9]\+\)/127.0.0.1:\1/g')
SECURITY=$(cat "$KDIR/security" 2>/dev/null || echo plaintext)
if [[ "$SECURITY" == sasl_ssl ]]; then
    export KCQRS_KAFKA_PROPERTIES=${KCQRS_KAFKA_PROPERTIES:-$KDIR/client.properties}
fi
DSN="postgresql://kcqrs@127.0.0.1:$PGPORT/kcqrs"

[[ -x "$TOOLS/kq_topics" ]] || { echo "make up: $TOOLS/kq_topics is not built (run make)" >&2; exit 1; }
KCQRS_BROKERS="$BROKERS" "$TOOLS/kq_topics" create 2>"$tmp/topics.err" || {
    cat "$tmp/topics.err" >&2
    echo "make up: creating the topics failed" >&2
    exit 1
}

# A local admin key, created once: its hash goes to the keys file, the key
# itself to a 0600 file beside it so the developer can read it back.
KEYS_FILE="$VAR/keys"
ADMIN_KEY="$VAR/admin.key"
if [[ ! -s "$ADMIN_KEY" ]]; then
    [[ -x "$BIN/kcqrs-keys" ]] || { echo "make up: $BIN/kcqrs-keys is not built (run make)" >&2; exit 1; }
    (umask 077 && KCQRS_KEYS_FILE="$KEYS_FILE" "$BIN/kcqrs-keys" create --name admin --roles admin >"$ADMIN_KEY.tmp") || {
        rm -f "$ADMIN_KEY.tmp"
        echo "make up: creating the local admin key failed (if $KEYS_FILE already has 'admin', remove that line)" >&2
        exit 1
    }
    mv "$ADMIN_KEY.tmp" "$ADMIN_KEY"
fi
# The key-encryption key (KCQRS_KEK_FILE: secrets are sealed into events under
# data keys it wraps), created once; rotate with kcqrs-keys kek-add.
KEK_FILE=${KCQRS_KEK_FILE:-$VAR/kek}
if [[ ! -s "$KEK_FILE" ]]; then
    "$BIN/kcqrs-keys" kek-add --file "$KEK_FILE" >/dev/null || {
        echo "make up: creating the key-encryption key $KEK_FILE failed" >&2
        exit 1
    }
fi
# The worker's key (role worker), created once the same way.
WORKER_KEY=${KCQRS_WORKER_KEY_FILE:-$VAR/worker.key}
kq_make_key "$BIN" "$KEYS_FILE" worker worker "$WORKER_KEY" || {
    echo "make up: creating the worker key failed (if $KEYS_FILE already has 'worker', remove that line)" >&2
    exit 1
}

# Services. Each runs in the background with its pid in var/<name>.pid, its
# address in var/<name>.addr and its log in var/<name>.log. One that answers
# GET /health on its address is left alone; a pid file alone proves nothing
# (after a kill -9 the pid may be an unreaped zombie): ops/lib.sh
# kq_service_start.
COMMANDS_ADDR=$(kq_service_addr kcqrs-commands)
# The command API's internal listener: the worker records its attempts there.
COMMANDS_INTERNAL_ADDR=${KCQRS_COMMANDS_INTERNAL_ADDR:-127.0.0.1:8090}
PROJECTOR_ADDR=$(kq_service_addr kcqrs-projector)
QUERY_ADDR=$(kq_service_addr kcqrs-query)
WORKER_ADDR=$(kq_service_addr kcqrs-worker)
start_service() { # name binary addr [program [args...]]
    local name=$1 bin=$2 addr=$3
    shift 3
    KCQRS_BROKERS="$BROKERS" KCQRS_PG_DSN="$DSN" KCQRS_KEYS_FILE="$KEYS_FILE" \
        KCQRS_KEK_FILE="$KEK_FILE" KCQRS_LMDB_DIR="${KCQRS_LMDB_DIR:-$VAR/lmdb}" \
        kq_service_start "$name" "$bin" "$addr" "$VAR" "$@"
}
# The web console (kcqrs-query /console/) calls kcqrs-commands from the browser:
# kcqrs-commands allows the query API's origin (CORS), kcqrs-query names the
# commands URL; either can be set beforehand.
KCQRS_CORS_ORIGINS=${KCQRS_CORS_ORIGINS-$(kq_url "$QUERY_ADDR")} \
    KCQRS_COMMANDS_ADDR="$COMMANDS_ADDR" KCQRS_COMMANDS_INTERNAL_ADDR="$COMMANDS_INTERNAL_ADDR" \
    start_service kcqrs-commands "$BIN/kcqrs-commands" "$COMMANDS_ADDR" || exit 1
# The projector creates the read models (and migrates PostgreSQL) before the
# query API, which reads them, can be ready.
KCQRS_PROJECTOR_ADDR="$PROJECTOR_ADDR" start_service kcqrs-projector "$BIN/kcqrs-projector" "$PROJECTOR_ADDR" || exit 1
KCQRS_CONSOLE_COMMANDS_URL=${KCQRS_CONSOLE_COMMANDS_URL:-$(kq_url "$COMMANDS_ADDR")} \
    KCQRS_QUERY_ADDR="$QUERY_ADDR" start_service kcqrs-query "$BIN/kcqrs-query" "$QUERY_ADDR" || exit 1
# More query hosts: kcqrs-query-i beside kcqrs-projector-i (own LMDB; PostgreSQL standby).
shift_port() { echo "${1%:*}:$((${1##*:} + 100 * ($2 - 1)))"; }
for ((i = 2; i <= QUERIES; i++)); do
    KCQRS_LMDB_DIR="$VAR/lmdb-$i" KCQRS_PROJECTOR_ADDR=$(shift_port "$PROJECTOR_ADDR" "$i") \
        start_service "kcqrs-projector-$i" "$BIN/kcqrs-projector" "$(shift_port "$PROJECTOR_ADDR" "$i")" \
        kcqrs-projector --target all || exit 1
    KCQRS_LMDB_DIR="$VAR/lmdb-$i" KCQRS_QUERY_ADDR=$(shift_port "$QUERY_ADDR" "$i") \
        KCQRS_CONSOLE_COMMANDS_URL=${KCQRS_CONSOLE_COMMANDS_URL:-$(kq_url "$COMMANDS_ADDR")} \
        start_service "kcqrs-query-$i" "$BIN/kcqrs-query" "$(shift_port "$QUERY_ADDR" "$i")" \
        kcqrs-query || exit 1
done
# The worker is ready once it joined its consumer group and kcqrs-commands answers.
KCQRS_WORKER_ADDR="$WORKER_ADDR" KCQRS_WORKER_KEY_FILE="$WORKER_KEY" \
    KCQRS_COMMANDS_ADDR="$COMMANDS_ADDR" KCQRS_COMMANDS_INTERNAL_ADDR="$COMMANDS_INTERNAL_ADDR" \
    start_service kcqrs-worker "$BIN/kcqrs-worker" "$WORKER_ADDR" || exit 1

rel() { echo "${1#"$REPO"/}"; }
kafka_desc() {
    local d="single node"
    [[ "$NODES" != 1 ]] && d="$NODES nodes, replication factor $KCQRS_REPLICATION_FACTOR, min.insync.replicas $KCQRS_MIN_INSYNC_REPLICAS"
    [[ "$SECURITY" == sasl_ssl ]] && d+=", SASL_SSL + SCRAM-SHA-512"
    echo "$d"
}
exports() {
    echo "  export KCQRS_BROKERS=$BROKERS"
    [[ "$NODES" != 1 ]] && echo "  export KCQRS_REPLICATION_FACTOR=$KCQRS_REPLICATION_FACTOR KCQRS_MIN_INSYNC_REPLICAS=$KCQRS_MIN_INSYNC_REPLICAS"
    [[ -n "${KCQRS_KAFKA_PROPERTIES:-}" ]] && echo "  export KCQRS_KAFKA_PROPERTIES=$KCQRS_KAFKA_PROPERTIES"
    [[ "$KQ_SCHEME" == https ]] && echo "  export KCQRS_HTTP_TLS_CA=$KCQRS_HTTP_TLS_CA"
    return 0
}
# curl's option for the CA when HTTPS uses a CA of its own.
https_hint() {
    [[ "$KQ_SCHEME" == https && "${KCQRS_HTTP_TLS_CA:-system}" != system ]] &&
        echo " --cacert $(rel "$KCQRS_HTTP_TLS_CA")"
    return 0
}
https_desc() {
    [[ "$KQ_SCHEME" == https ]] || return 0
    echo "HTTPS: certificate $(rel "$KCQRS_HTTP_TLS_CERT"), clients trust $(rel "$KCQRS_HTTP_TLS_CA")"
}
more_hosts() {
    local i
    for ((i = 2; i <= QUERIES; i++)); do
        echo
        echo "  query host $i  $(kq_url "$(shift_port "$QUERY_ADDR" "$i")")  (kcqrs-query-$i; LMDB $(rel "$VAR/lmdb-$i"))"
        echo "                projector $(kq_url "$(shift_port "$PROJECTOR_ADDR" "$i")") (kcqrs-projector-$i: its LMDB; PostgreSQL standby)"
    done
    [[ $QUERIES -gt 1 ]] && echo && echo "  roles, pids and health of everything: make status (ops/status.sh --json)"
    return 0
}
cat <<EOF

kcqrs is up (data in $(rel "$VAR")/, kept across 'make down' / 'make up').
  Kafka 3.9.1   $BROKERS ($(kafka_desc)); KRaft controller port(s) $CPORTS
                data and logs in $(rel "$KDIR")/ (ops/kafka.sh status $(rel "$KDIR"))
  PostgreSQL 15 127.0.0.1:$PGPORT  database kcqrs, role kcqrs (trust auth on loopback)
                data $(rel "$VAR/pg")  log $(rel "$VAR/pg/postgresql.log")
  commands      $(kq_url "$COMMANDS_ADDR")  (POST/PUT/DELETE /api/v1/resources; /ready, /metrics)
                internal $(kq_url "$COMMANDS_INTERNAL_ADDR") (same routes; the worker records there)
                log $(rel "$VAR/kcqrs-commands.log")  snapshot $(rel "${KCQRS_LMDB_DIR:-$VAR/lmdb}")/commands
  projector     $(kq_url "$PROJECTOR_ADDR")  (/ready, /metrics: lag per partition and read model)
                log $(rel "$VAR/kcqrs-projector.log")  LMDB read model $(rel "${KCQRS_LMDB_DIR:-$VAR/lmdb}")/readmodel
  query         $(kq_url "$QUERY_ADDR")  (GET /api/v1/resources, /api/v1/audit, /api/v1/status; /ready, /metrics)
                log $(rel "$VAR/kcqrs-query.log")
  console       $(kq_url "$QUERY_ADDR")/console/  (web console: sign in with the admin key below)
  worker        $(kq_url "$WORKER_ADDR")  (/ready, /metrics: runs, attempts, breakers, lag)
                log $(rel "$VAR/kcqrs-worker.log")  key $(rel "$WORKER_KEY") (role worker)$(more_hosts)

Settings for kcqrs programs and tools run from this shell:
$(exports)
  export KCQRS_PG_DSN=$DSN
  export KCQRS_KEYS_FILE=$KEYS_FILE
  export KCQRS_KEK_FILE=$KEK_FILE

API key of the local admin (name "admin", role admin): $(rel "$ADMIN_KEY")
  curl$(https_hint) -H "Authorization: Bearer \$(cat $(rel "$ADMIN_KEY"))" $(kq_url "$QUERY_ADDR")/api/v1/status

$(https_desc)
Status: ops/kafka.sh status $(rel "$KDIR"); ops/pg.sh status $(rel "$VAR/pg")   Stop: make down
EOF
