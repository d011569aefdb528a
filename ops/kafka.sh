#!/usr/bin/env bash
# ops/kafka.sh — a single-node Apache Kafka 3.9.1 (KRaft, broker and controller in
# one JVM) run from the Maven Central jars, for `make up` and the end-to-end tests.
#
#   ops/kafka.sh fetch                              jars into .cache/kafka/libs (once)
#   ops/kafka.sh start  DATA_DIR PORT CONTROLLER_PORT
#   ops/kafka.sh stop   DATA_DIR
#   ops/kafka.sh status DATA_DIR                    exit 0 running, 3 stopped
#
# DATA_DIR holds everything of one broker: server.properties (rewritten on every
# start), cluster.id (generated once), data/ (the log segments and KRaft metadata
# log; formatted on first start), kafka.pid and kafka.log (the broker's console).
# The broker listens on 127.0.0.1 only. `start` returns when the broker answers
# metadata requests (tests/tools/kq_kafka_ready), or fails after
# KQ_KAFKA_START_TIMEOUT seconds (default 60) with the tail of kafka.log.
#
# Environment: KQ_KAFKA_HEAP (default "-Xmx512m"), KQ_KAFKA_START_TIMEOUT,
# KQ_KAFKA_STOP_TIMEOUT (default 30), KQ_LOG4J (log4j.properties to use instead of
# ops/kafka/log4j.properties), KCQRS_TOOLS (directory of kq_kafka_ready;
# default build/tests/tools).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=3.9.1
CACHE="$REPO/.cache/kafka"
LIBS="$CACHE/libs"
STAMP="$CACHE/libs.stamp"
POM="$REPO/ops/kafka/pom.xml"
LOG4J=${KQ_LOG4J:-$REPO/ops/kafka/log4j.properties}

KQ_PROG=kafka.sh
# shellcheck source=ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { usage_from_header 9; }

# ------------------------------------------------------------------ fetch
# The stamp records the POM's checksum, so editing the POM (a new version)
# fetches again; an interrupted fetch leaves no stamp and is redone.
pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

libs_ok() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]]; }

cmd_fetch() {
    if libs_ok; then
        return 0
    fi
    command -v mvn >/dev/null || die "maven (mvn) is not installed; run ops/install-deps.sh"
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    local t0 tmp
    t0=$(now)
    tmp="$CACHE/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$CACHE"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" -Dkq.libs.dir="$tmp" dependency:copy-dependencies; then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (see above)"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar "$tmp"/slf4j-reload4j-*.jar >/dev/null ||
        die "fetched jars are incomplete (no kafka_2.13 or slf4j-reload4j)"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    pom_sum >"$STAMP"
    echo "kafka.sh: $(ls "$LIBS" | wc -l) jars in $(elapsed "$t0") s"
}

# ------------------------------------------------------------------ helpers
need_java() {
    command -v java >/dev/null || die "java is not installed (need Java 11 or newer); run ops/install-deps.sh"
    local v major
    v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    major=${v%%.*}
    [[ "$major" == 1 ]] && major=$(echo "$v" | cut -d. -f2)
    [[ "$major" =~ ^[0-9]+$ && "$major" -ge 11 ]] || die "java $v is too old; Kafka $KAFKA_VERSION needs 11 or newer"
}

check_port_arg() {
    [[ "$1" =~ ^[0-9]+$ && "$1" -ge 1 && "$1" -le 65535 ]] || die "not a port number: '$1'"
}

# Is anything listening on TCP port $1 (any address)?
port_busy() { [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }

# The pid in DATA_DIR/kafka.pid if that process is alive and is our broker.
running_pid() {
    local dir="$1" pid
    [[ -f "$dir/kafka.pid" ]] || return 1
    pid=$(cat "$dir/kafka.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be kafka.Kafka on our config.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $dir/server.properties" ||
        return 1
    echo "$pid"
}

prop() { sed -n "s/^$2=//p" "$1/server.properties" 2>/dev/null | head -n1; }

ready_probe() {
    local p
    for p in "${KCQRS_TOOLS:-}/kq_kafka_ready" "$REPO/build/tests/tools/kq_kafka_ready"; do
        if [[ -x "$p" ]]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what
# `kafka-storage.sh random-uuid` prints), not starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

write_properties() {
    local dir="$1" port="$2" cport="$3"
    cat >"$dir/server.properties.tmp" <<EOF
# Written by ops/kafka.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

# One broker: internal topics with one replica, and small ones.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
default.replication.factor=1
min.insync.replicas=1
num.partitions=1

# Topics are created by kcqrs (kq_kafka_ensure_topics) with their own configs.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# A 2-core machine: few threads, a small log-cleaner buffer (it is on-heap).
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.io.buffer.size=524288

# Controlled shutdown stays on: it fences our registration on the way out, so
# the next start registers at once (without it the controller rejects the new
# incarnation with DUPLICATE_BROKER_REGISTRATION until the old session expires).
# A shorter session bounds that wait after a crash or SIGKILL.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
    mv "$dir/server.properties.tmp" "$dir/server.properties"
}

# ------------------------------------------------------------------ start
cmd_start() {
    [[ $# -eq 3 ]] || usage
    local dir="$1" port="$2" cport="$3" pid t0 timeout probe cid log
    check_port_arg "$port"
    check_port_arg "$cport"
    [[ "$port" != "$cport" ]] || die "PORT and CONTROLLER_PORT must differ"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    log="$dir/kafka.log"

    if pid=$(running_pid "$dir"); then
        echo "kafka: already running (pid $pid) on 127.0.0.1:$(prop "$dir" advertised.listeners | sed 's/.*://'), data $dir"
        return 0
    fi
    need_java
    cmd_fetch
    local p
    for p in "$port" "$cport"; do
        if port_busy "$p"; then
            die "port $p is already in use on this machine:
$(ss -Hltnp "sport = :$p" 2>/dev/null | sed 's/^/    /')
    choose other ports (KCQRS_KAFKA_PORT / KCQRS_KAFKA_CONTROLLER_PORT for make up)"
        fi
    done

    write_properties "$dir" "$port" "$cport"
    if [[ ! -f "$dir/cluster.id" ]]; then
        new_cluster_id >"$dir/cluster.id.tmp"
        mv "$dir/cluster.id.tmp" "$dir/cluster.id"
    fi
    cid=$(cat "$dir/cluster.id")
    t0=$(now)
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        mkdir -p "$dir/data"
        java -Xmx256m -Dlog4j.configuration="file:$LOG4J" -cp "$LIBS/*" \
            kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" >>"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; die "formatting $dir/data failed"; }
    fi

    echo "==== $(date -u +%FT%TZ) ops/kafka.sh start (port $port, controller $cport)" >>"$log"
    rm -f "$dir/kafka.pid"
    # setsid: the broker gets its own session, so a Ctrl-C meant for the caller
    # (make, bats) does not reach it; it is stopped with `ops/kafka.sh stop`.
    # The inner shell writes its own pid, which exec keeps for java.
    # shellcheck disable=SC2086,SC2016
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/kafka.pid" \
        java ${KQ_KAFKA_HEAP:--Xmx512m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j.configuration="file:$LOG4J" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$log" 2>&1 </dev/null &

    timeout=${KQ_KAFKA_START_TIMEOUT:-60}
    probe=$(ready_probe) || probe=
    pid=
    while :; do
        # The pid file appears as soon as the background shell runs; once seen,
        # its process must stay alive (a concurrent `stop` removes the file).
        [[ -z "$pid" ]] && pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "---- last lines of $log:" >&2
            tail -n 40 "$log" >&2
            die "the broker exited during startup (see $log)"
        fi
        if [[ -n "$pid" ]] && port_busy "$port"; then
            if [[ -n "$probe" ]]; then
                "$probe" "127.0.0.1:$port" 2000 2>/dev/null && break
            elif grep -q "Kafka Server started" "$log"; then
                break # no probe built: the broker's own "started" line
            fi
        fi
        if [[ $(elapsed "$t0" | cut -d. -f1) -ge $timeout ]]; then
            echo "---- last lines of $log:" >&2
            tail -n 40 "$log" >&2
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
            die "the broker was not ready within ${timeout}s (killed it; see $log)"
        fi
        sleep 0.2
    done
    echo "kafka: ready on 127.0.0.1:$port after $(elapsed "$t0") s (pid $pid, controller 127.0.0.1:$cport, data $dir, log $log)"
}

# ------------------------------------------------------------------ stop
cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir="$1" pid t0 timeout
    [[ -d "$dir" ]] || { echo "kafka: not running (no $dir)"; return 0; }
    dir=$(cd "$dir" && pwd)
    if ! pid=$(running_pid "$dir"); then
        rm -f "$dir/kafka.pid"
        echo "kafka: not running ($dir)"
        return 0
    fi
    t0=$(now)
    timeout=${KQ_KAFKA_STOP_TIMEOUT:-30}
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [[ $(elapsed "$t0" | cut -d. -f1) -ge $timeout ]]; then
            echo "kafka.sh: broker pid $pid did not stop within ${timeout}s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    rm -f "$dir/kafka.pid"
    echo "kafka: stopped (pid $pid) in $(elapsed "$t0") s"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir="$1" pid
    [[ -d "$dir" ]] && dir=$(cd "$dir" && pwd)
    if pid=$(running_pid "$dir"); then
        echo "kafka: running (pid $pid) on $(prop "$dir" advertised.listeners | sed 's|.*//||'), data $dir"
        return 0
    fi
    echo "kafka: stopped ($dir)"
    return 3
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
fetch) cmd_fetch ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
