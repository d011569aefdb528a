#!/usr/bin/env bash
# ops/kafka.sh — Apache Kafka 3.9.1 (KRaft, broker and controller in one JVM per
# node) run from the Maven Central jars: a single node for `make up` and the
# end-to-end tests, or a cluster of several nodes on this machine.
#
#   ops/kafka.sh fetch                                  jars into .cache/kafka/libs (once)
#   ops/kafka.sh start  DIR PORT CONTROLLER_PORT        a single node
#   ops/kafka.sh start  DIR PORTS CONTROLLER_PORTS      a cluster, one port per node, comma-
#                                                       separated (9092,9094,9096 9093,9095,9097)
#   ops/kafka.sh start|stop|kill|restart|pause|resume [DIR] N
#                                                       node N (1, 2, ...) of the cluster in DIR
#   ops/kafka.sh start  DIR                             every node of the cluster in DIR again
#   ops/kafka.sh stop   DIR                             the node, or every node of a cluster
#   ops/kafka.sh status DIR [N]                         exit 0 running, 3 (any) stopped
#
# DIR defaults to $KCQRS_VAR_DIR/kafka (var/kafka) where it may be left out. kill
# is SIGKILL (no controlled shutdown), pause/resume SIGSTOP/SIGCONT.
#
# A single node's DIR holds server.properties (rewritten on every start),
# cluster.id (generated once), data/ (log segments and KRaft metadata log;
# formatted on first start), kafka.pid and kafka.log (the broker's console). A
# cluster's DIR holds cluster.conf (node count, ports, security), cluster.id and
# one such directory per node, node1/ node2/ ...; every node is a KRaft voter and
# a broker. Internal topics get replication factor min(3, nodes) and
# min.insync.replicas 2 from 3 nodes on. Everything listens on 127.0.0.1 only.
# `start` returns when each started broker answers metadata requests
# (tests/tools/kq_kafka_ready), or fails after KQ_KAFKA_START_TIMEOUT seconds
# (default 60; 120 for a node of a cluster) with the tail of its kafka.log. One node of a cluster becomes
# ready only while a majority of the nodes runs.
#
# Security: KQ_KAFKA_SECURITY=sasl_ssl at the first start of DIR (it is recorded
# in DIR/security) gives the brokers a SASL_SSL listener (SCRAM-SHA-512, PEM
# certificates made with openssl in DIR/tls) instead of PLAINTEXT; the SCRAM users
# (admin for the brokers, kcqrs for clients) are created when the storage is
# formatted. DIR/client.properties then holds what a kcqrs client needs
# (KCQRS_KAFKA_PROPERTIES=DIR/client.properties).
#
# Environment: KQ_KAFKA_HEAP (default "-Xmx512m"; "-Xmx384m" per cluster node),
# KQ_KAFKA_START_TIMEOUT, KQ_KAFKA_STOP_TIMEOUT (default 30), KQ_LOG4J
# (log4j.properties to use instead of ops/kafka/log4j.properties), KCQRS_TOOLS
# (directory of kq_kafka_ready; default build/tests/tools).
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
usage() { usage_from_header 17; }

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

# ------------------------------------------------------------------ TLS and SCRAM
# DIR/tls of a sasl_ssl cluster, made once with openssl: a CA (ca.pem), the
# brokers' key and certificate for 127.0.0.1/localhost signed by it (broker.pem,
# PEM keystore: key then certificate), SCRAM passwords of the users admin (the
# brokers among themselves) and kcqrs (clients), and DIR/client.properties.
make_tls() {
    local dir="$1" tls="$1/tls" u
    [[ -f "$tls/done" ]] && return 0
    command -v openssl >/dev/null || die "openssl is not installed (needed for KQ_KAFKA_SECURITY=sasl_ssl)"
    rm -rf "$tls"
    mkdir -p "$tls"
    chmod 700 "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kcqrs local Kafka CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key \
            -out broker.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile broker.ext -out broker.crt 2>/dev/null
        # Kafka's PEM keystore wants an unencrypted PKCS#8 key, then the certificate.
        openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.p8
        cat broker.p8 broker.crt >broker.pem
        rm -f broker.csr broker.ext broker.p8 ca.srl
        for u in admin kcqrs; do
            head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$u.password"
        done
        chmod 600 ./*
    ) || die "making the TLS certificates in $tls failed"
    umask_write "$dir/client.properties" <<PROPS
# librdkafka settings of a kcqrs client of the SASL_SSL broker(s) in $dir
# (KCQRS_KAFKA_PROPERTIES=$dir/client.properties). Written by ops/kafka.sh.
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=kcqrs
sasl.password=$(cat "$tls/kcqrs.password")
ssl.ca.location=$tls/ca.pem
PROPS
    touch "$tls/done"
}

# umask_write FILE: stdin into FILE, mode 0600, replaced atomically.
umask_write() {
    (umask 077 && cat >"$1.tmp") && mv "$1.tmp" "$1"
}

# ------------------------------------------------------------------ one node
# write_properties NODE_DIR NODE_ID PORT CONTROLLER_PORT VOTERS NODES SECURITY TLS_DIR
write_properties() {
    local dir="$1" id="$2" port="$3" cport="$4" voters="$5" nodes="$6" sec="$7" tls="$8"
    local rf=$((nodes < 3 ? nodes : 3)) isr=$((nodes < 3 ? 1 : 2)) proto=PLAINTEXT
    [[ "$sec" == sasl_ssl ]] && proto=SASL_SSL
    (umask 077 && cat >"$dir/server.properties.tmp") <<EOP
# Written by ops/kafka.sh on every start; edits are lost.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=$proto://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$proto://127.0.0.1:$port
listener.security.protocol.map=$proto:$proto,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=$proto
log.dirs=$dir/data

# $nodes node(s): internal topics with $rf replica(s), and small ones. A write
# acknowledged with acks=all is on $isr broker(s) at least.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr
unclean.leader.election.enable=false
num.partitions=1

# Topics are created by kcqrs (kq_kafka_ensure_topics) with their own configs.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# A 2-core machine: few threads, a small log-cleaner buffer (it is on-heap).
num.network.threads=2
num.io.threads=$((nodes > 1 ? 2 : 4))
background.threads=$((nodes > 1 ? 2 : 4))
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.io.buffer.size=524288

# Controlled shutdown stays on: it fences our registration on the way out, so
# the next start registers at once (without it the controller rejects the new
# incarnation with DUPLICATE_BROKER_REGISTRATION until the old session expires).
# A shorter session bounds that wait after a crash or SIGKILL, and how long a
# dead broker stays leader of its partitions.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
# A follower that stops fetching (killed, paused) leaves the ISR after 10 s.
replica.lag.time.max.ms=10000
EOP
    if [[ "$sec" == sasl_ssl ]]; then
        cat >>"$dir/server.properties.tmp" <<EOP

# SASL_SSL (SCRAM-SHA-512) for clients and between brokers; the controllers'
# own listener stays PLAINTEXT on loopback.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$tls/admin.password")";
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
ssl.client.auth=none
EOP
    fi
    mv "$dir/server.properties.tmp" "$dir/server.properties"
}

# start_node NODE_DIR NODE_ID PORT CONTROLLER_PORT VOTERS NODES SECURITY CLUSTER_ID TLS_DIR PROPS HEAP
# Format once, launch the JVM, wait until the broker answers metadata requests.
start_node() {
    local dir="$1" id="$2" port="$3" cport="$4" voters="$5" nodes="$6" sec="$7" cid="$8"
    local tls="$9" props="${10}" heap="${11}" pid t0 timeout probe log p scram=()
    log="$dir/kafka.log"
    if pid=$(running_pid "$dir"); then
        echo "kafka: already running (pid $pid) on 127.0.0.1:$(prop "$dir" advertised.listeners | sed 's/.*://'), data $dir"
        return 0
    fi
    for p in "$port" "$cport"; do
        if port_busy "$p"; then
            die "port $p is already in use on this machine:
$(ss -Hltnp "sport = :$p" 2>/dev/null | sed 's/^/    /')
    choose other ports (KCQRS_KAFKA_PORT / KCQRS_KAFKA_CONTROLLER_PORT for make up)"
        fi
    done
    mkdir -p "$dir"
    write_properties "$dir" "$id" "$port" "$cport" "$voters" "$nodes" "$sec" "$tls"
    t0=$(now)
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        mkdir -p "$dir/data"
        if [[ "$sec" == sasl_ssl ]]; then
            scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$tls/admin.password")]"
                --add-scram "SCRAM-SHA-512=[name=kcqrs,password=$(cat "$tls/kcqrs.password")]")
        fi
        java -Xmx256m -Dlog4j.configuration="file:$LOG4J" -cp "$LIBS/*" \
            kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" "${scram[@]}" \
            >>"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; die "formatting $dir/data failed"; }
    fi

    echo "==== $(date -u +%FT%TZ) ops/kafka.sh start (node $id, port $port, controller $cport)" >>"$log"
    rm -f "$dir/kafka.pid"
    # setsid: the broker gets its own session, so a Ctrl-C meant for the caller
    # (make, bats) does not reach it; it is stopped with `ops/kafka.sh stop`.
    # The inner shell writes its own pid, which exec keeps for java.
    # shellcheck disable=SC2086,SC2016
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/kafka.pid" \
        java $heap -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j.configuration="file:$LOG4J" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$log" 2>&1 </dev/null &

    timeout=${KQ_KAFKA_START_TIMEOUT:-$((nodes > 1 ? 120 : 60))}
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
                KCQRS_KAFKA_PROPERTIES="$props" "$probe" "127.0.0.1:$port" 2000 2>/dev/null && break
            elif grep -q "Kafka Server started" "$log"; then
                break # no probe built: the broker's own "started" line
            fi
        fi
        if [[ $(elapsed "$t0" | cut -d. -f1) -ge $timeout ]]; then
            echo "---- last lines of $log:" >&2
            tail -n 40 "$log" >&2
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
            [[ $nodes -gt 1 ]] && echo "kafka.sh: (a node of a cluster is ready only while a majority of its nodes runs)" >&2
            die "the broker was not ready within ${timeout}s (killed it; see $log)"
        fi
        sleep 0.2
    done
    local what="ready"
    [[ $nodes -gt 1 ]] && what="node $id ready"
    [[ "$sec" == sasl_ssl ]] && what+=" (SASL_SSL)"
    echo "kafka: $what on 127.0.0.1:$port after $(elapsed "$t0") s (pid $pid, controller 127.0.0.1:$cport, data $dir, log $log)"
}

# stop_node NODE_DIR [SIGNAL]: TERM (controlled shutdown, SIGKILL after
# KQ_KAFKA_STOP_TIMEOUT) or KILL.
stop_node() {
    local dir="$1" sig="${2:-TERM}" pid t0 timeout
    [[ -d "$dir" ]] || { echo "kafka: not running (no $dir)"; return 0; }
    if ! pid=$(running_pid "$dir"); then
        rm -f "$dir/kafka.pid"
        echo "kafka: not running ($dir)"
        return 0
    fi
    t0=$(now)
    timeout=${KQ_KAFKA_STOP_TIMEOUT:-30}
    kill -CONT "$pid" 2>/dev/null || true # a paused broker cannot shut down
    kill -"$sig" "$pid" 2>/dev/null || true
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
    echo "kafka: $([[ $sig == KILL ]] && echo killed || echo stopped) (pid $pid) in $(elapsed "$t0") s ($dir)"
}

# ------------------------------------------------------------------ single node or cluster
is_cluster() { [[ -f "$1/cluster.conf" ]]; }
conf_get() { sed -n "s/^$2=//p" "$1/cluster.conf" | head -n1; }

# The cluster id of DIR, generated once.
cluster_id() {
    if [[ ! -f "$1/cluster.id" ]]; then
        new_cluster_id >"$1/cluster.id.tmp"
        mv "$1/cluster.id.tmp" "$1/cluster.id"
    fi
    cat "$1/cluster.id"
}

# The security of DIR: recorded at its first start from KQ_KAFKA_SECURITY; a
# different request later is refused (the SCRAM users exist only if created at
# format time).
security_of() {
    local dir="$1" want="${KQ_KAFKA_SECURITY:-}" have
    have=$(cat "$dir/security" 2>/dev/null || true)
    if [[ -z "$have" ]]; then
        have=${want:-plaintext}
        [[ -f "$dir/cluster.id" && "$have" != plaintext ]] &&
            die "$dir was first started without KQ_KAFKA_SECURITY=$have; remove it (data lost) or use another directory"
        echo "$have" >"$dir/security"
    fi
    [[ -z "$want" || "$want" == "$have" ]] ||
        die "$dir runs with security $have, not $want; remove it (data lost) or use another directory"
    case "$have" in
    plaintext) ;;
    sasl_ssl) make_tls "$dir" ;;
    *) die "unknown security '$have' (plaintext or sasl_ssl)" ;;
    esac
    echo "$have"
}

single_start() {
    local dir="$1" port="$2" cport="$3" sec cid props=
    check_port_arg "$port"
    check_port_arg "$cport"
    [[ "$port" != "$cport" ]] || die "PORT and CONTROLLER_PORT must differ"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    is_cluster "$dir" && die "$dir holds a cluster (cluster.conf); give one port per node"
    if pid=$(running_pid "$dir"); then
        echo "kafka: already running (pid $pid) on 127.0.0.1:$(prop "$dir" advertised.listeners | sed 's/.*://'), data $dir"
        return 0
    fi
    need_java
    cmd_fetch
    sec=$(security_of "$dir")
    [[ "$sec" == sasl_ssl ]] && props="$dir/client.properties"
    cid=$(cluster_id "$dir")
    start_node "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" 1 "$sec" "$cid" "$dir/tls" "$props" \
        "${KQ_KAFKA_HEAP:--Xmx512m}"
}

# cluster_start DIR [PORTS CONTROLLER_PORTS] [NODE]: write or read cluster.conf,
# start NODE or every node (in parallel: a node needs a majority to be ready).
cluster_start() {
    local dir="$1" ports="${2:-}" cports="${3:-}" only="${4:-}" n i sec cid voters props= rc=0
    local -a pa ca jobs
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -n "$ports" ]]; then
        IFS=, read -r -a pa <<<"$ports"
        IFS=, read -r -a ca <<<"$cports"
        n=${#pa[@]}
        [[ $n -ge 2 && $n -le 9 ]] || die "a cluster has 2 to 9 nodes, not $n"
        [[ ${#ca[@]} -eq $n ]] || die "give as many controller ports as ports ($n)"
        for p in "${pa[@]}" "${ca[@]}"; do check_port_arg "$p"; done
        [[ $(printf '%s\n' "${pa[@]}" "${ca[@]}" | sort -u | wc -l) -eq $((2 * n)) ]] ||
            die "the ports must all differ"
        [[ -f "$dir/kafka.pid" || -f "$dir/server.properties" ]] &&
            die "$dir holds a single node; a cluster needs its own directory"
        if is_cluster "$dir" && [[ "$(conf_get "$dir" nodes)" != "$n" ]]; then
            die "$dir holds a cluster of $(conf_get "$dir" nodes) nodes, not $n"
        fi
        if ! is_cluster "$dir" || [[ "$(conf_get "$dir" ports)" != "$ports" || "$(conf_get "$dir" controller_ports)" != "$cports" ]]; then
            # Ports of running nodes cannot change under them.
            for ((i = 1; i <= n; i++)); do
                if is_cluster "$dir" && running_pid "$dir/node$i" >/dev/null; then
                    die "node $i runs with ports $(conf_get "$dir" ports) / $(conf_get "$dir" controller_ports); stop the cluster first"
                fi
            done
            printf 'nodes=%s\nports=%s\ncontroller_ports=%s\n' "$n" "$ports" "$cports" >"$dir/cluster.conf.tmp"
            mv "$dir/cluster.conf.tmp" "$dir/cluster.conf"
        fi
    fi
    is_cluster "$dir" || die "$dir holds no cluster (no cluster.conf); start it once with PORTS and CONTROLLER_PORTS"
    n=$(conf_get "$dir" nodes)
    IFS=, read -r -a pa <<<"$(conf_get "$dir" ports)"
    IFS=, read -r -a ca <<<"$(conf_get "$dir" controller_ports)"
    [[ -z "$only" || ("$only" =~ ^[0-9]+$ && $only -ge 1 && $only -le $n) ]] || die "no node $only (the cluster in $dir has $n)"
    need_java
    cmd_fetch
    sec=$(security_of "$dir")
    [[ "$sec" == sasl_ssl ]] && props="$dir/client.properties"
    cid=$(cluster_id "$dir")
    voters=
    for ((i = 1; i <= n; i++)); do voters+="${voters:+,}$i@127.0.0.1:${ca[i - 1]}"; done
    if [[ -n "$only" ]]; then
        start_node "$dir/node$only" "$only" "${pa[only - 1]}" "${ca[only - 1]}" "$voters" "$n" "$sec" \
            "$cid" "$dir/tls" "$props" "${KQ_KAFKA_HEAP:--Xmx384m}"
        return
    fi
    jobs=()
    for ((i = 1; i <= n; i++)); do
        (start_node "$dir/node$i" "$i" "${pa[i - 1]}" "${ca[i - 1]}" "$voters" "$n" "$sec" "$cid" \
            "$dir/tls" "$props" "${KQ_KAFKA_HEAP:--Xmx384m}") >"$dir/node$i.start" 2>&1 &
        jobs+=($!)
    done
    for ((i = 1; i <= n; i++)); do
        wait "${jobs[i - 1]}" || rc=1
        cat "$dir/node$i.start"
        rm -f "$dir/node$i.start"
    done
    [[ $rc -eq 0 ]] || die "starting the cluster in $dir failed (see above)"
    echo "kafka: cluster of $n nodes ready, bootstrap servers $(brokers_of "$dir")"
}

brokers_of() {
    local dir="$1" p out=
    for p in $(conf_get "$dir" ports | tr , ' '); do out+="${out:+,}127.0.0.1:$p"; done
    echo "$out"
}

# ------------------------------------------------------------------ commands
# Arguments [DIR] N of the per-node commands: N is the last argument; DIR the
# default var/kafka when absent.
default_dir() { echo "${KCQRS_VAR_DIR:-$REPO/var}/kafka"; }

node_args() { # sets NDIR and NODE, or returns 1 when the arguments name no node
    NDIR= NODE=
    case $# in
    1) [[ "$1" =~ ^[0-9]+$ ]] || return 1; NDIR=$(default_dir) NODE=$1 ;;
    2) [[ "$2" =~ ^[0-9]+$ ]] || return 1; NDIR=$1 NODE=$2 ;;
    *) return 1 ;;
    esac
    is_cluster "$NDIR" || die "$NDIR holds no cluster (no cluster.conf)"
    NDIR=$(cd "$NDIR" && pwd)
    [[ $NODE -ge 1 && $NODE -le $(conf_get "$NDIR" nodes) ]] ||
        die "no node $NODE (the cluster in $NDIR has $(conf_get "$NDIR" nodes))"
}

cmd_start() {
    if [[ $# -eq 3 && "$2" == *,* ]]; then
        cluster_start "$1" "$2" "$3"
    elif [[ $# -eq 3 ]]; then
        single_start "$@"
    elif node_args "$@"; then
        cluster_start "$NDIR" "" "" "$NODE"
    elif [[ $# -eq 1 ]] && is_cluster "$1"; then
        cluster_start "$1"
    else
        usage
    fi
}

cmd_stop() { # stop|kill
    local sig="$1" i n jobs=() rc=0 dir
    shift
    if node_args "$@"; then
        stop_node "$NDIR/node$NODE" "$sig"
        return
    fi
    [[ $# -eq 1 ]] || usage
    dir="$1"
    [[ -d "$dir" ]] || { echo "kafka: not running (no $dir)"; return 0; }
    dir=$(cd "$dir" && pwd)
    if ! is_cluster "$dir"; then
        stop_node "$dir" "$sig"
        return
    fi
    n=$(conf_get "$dir" nodes)
    for ((i = 1; i <= n; i++)); do
        stop_node "$dir/node$i" "$sig" &
        jobs+=($!)
    done
    for i in "${jobs[@]}"; do wait "$i" || rc=1; done
    return $rc
}

cmd_restart() {
    node_args "$@" || usage
    stop_node "$NDIR/node$NODE"
    cluster_start "$NDIR" "" "" "$NODE"
}

cmd_signal() { # STOP|CONT [DIR] N
    local sig="$1" pid
    shift
    node_args "$@" || usage
    pid=$(running_pid "$NDIR/node$NODE") || die "node $NODE is not running"
    kill -"$sig" "$pid"
    echo "kafka: node $NODE (pid $pid) $([[ $sig == STOP ]] && echo paused || echo resumed)"
}

status_line() { # NODE_DIR LABEL
    local pid
    if pid=$(running_pid "$1"); then
        local state=running
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == T ]] && state=paused
        echo "kafka: ${2}$state (pid $pid) on $(prop "$1" advertised.listeners | sed 's|.*//||'), data $1"
        [[ $state == running ]]
        return
    fi
    echo "kafka: ${2}stopped ($1)"
    return 3
}

cmd_status() {
    local dir i n rc=0
    if node_args "$@"; then
        status_line "$NDIR/node$NODE" "node $NODE "
        return
    fi
    [[ $# -eq 1 ]] || usage
    dir="$1"
    [[ -d "$dir" ]] && dir=$(cd "$dir" && pwd)
    if ! is_cluster "$dir"; then
        status_line "$dir" ""
        return
    fi
    n=$(conf_get "$dir" nodes)
    for ((i = 1; i <= n; i++)); do
        status_line "$dir/node$i" "node $i " || rc=3
    done
    return $rc
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
fetch) cmd_fetch ;;
start) cmd_start "$@" ;;
stop) cmd_stop TERM "$@" ;;
kill) cmd_stop KILL "$@" ;;
restart) cmd_restart "$@" ;;
pause) cmd_signal STOP "$@" ;;
resume) cmd_signal CONT "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
