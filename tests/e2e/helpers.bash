# tests/e2e/helpers.bash — shared helpers for the end-to-end tests.
#
# Load it at the top of every .bats file:   load helpers
#
# What the suite provides (setup_suite.bash): KCQRS_BROKERS and KCQRS_PG_DSN of
# a Kafka broker and a PostgreSQL started once for all files. What this file
# adds:
#   - KCQRS_TOPIC_PREFIX=e2e.<file name>: each file has its own topics, so files
#     never see each other's events (topics are created by whoever needs them);
#   - KCQRS_BIN / KCQRS_TOOLS defaults (the Makefile passes absolute paths);
#   - the functions below.
# Processes a test starts in the background must not keep bats' fd 3 open, or
# bats waits for them at the end: start them with kq_bg.

KQ_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KCQRS_BIN="${KCQRS_BIN:-$KQ_REPO/build/bin}"
export KCQRS_TOOLS="${KCQRS_TOOLS:-$KQ_REPO/build/tests/tools}"

_kq_file=$(basename "${BATS_TEST_FILENAME:-e2e}" .bats)
export KCQRS_TOPIC_PREFIX="e2e.${_kq_file//[^A-Za-z0-9._-]/_}"
unset _kq_file

# Fail the test with a message (bats' `fail` needs bats-assert, which we do not use).
kq_fail() {
    echo "$*" >&2
    return 1
}

# psql on $KCQRS_PG_DSN with search_path = the read model's schema
# ($KCQRS_PG_SCHEMA, default kcqrs): unaligned, tuples only, stop at the first error.
#   kq_psql -c "select 1"        kq_psql -v x="$value" <<<"select :'x'"
kq_psql() {
    PGOPTIONS="-c search_path=${KCQRS_PG_SCHEMA:-kcqrs}" \
        psql -X -q -At -v ON_ERROR_STOP=1 -d "$KCQRS_PG_DSN" "$@"
}

# A fresh database for this file (call in setup_file): (re)creates e2e_<name>
# owned by kcqrs and exports KCQRS_PG_DSN pointing at it. The role kcqrs may not
# create databases; this connects as the superuser postgres (trust auth on the
# test cluster) to do it.
kq_fresh_db() {
    local name="e2e_${1//[^A-Za-z0-9_]/_}"
    local base="${KCQRS_PG_DSN%/*}"
    local admin="${base/kcqrs@/postgres@}/postgres"
    psql -X -q -v ON_ERROR_STOP=1 -d "$admin" -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS \"$name\"" -c "CREATE DATABASE \"$name\" OWNER kcqrs"
    export KCQRS_PG_DSN="$base/$name"
}

# Run a tool from build/tests/tools.
kq_tool() {
    local name="$1"
    shift
    "$KCQRS_TOOLS/$name" "$@"
}

# kq_wait_for SECONDS CMD [ARGS...]: run CMD every 0.1 s until it succeeds;
# fail (printing CMD's last output) after SECONDS.
kq_wait_for() {
    local timeout="$1" deadline out
    shift
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    while :; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        if [[ $(date +%s%N) -ge $deadline ]]; then
            echo "kq_wait_for: '$*' did not succeed within ${timeout}s; last output:" >&2
            echo "$out" >&2
            return 1
        fi
        sleep 0.1
    done
}

# kq_wait_port PORT [SECONDS]: wait until something listens on 127.0.0.1:PORT.
kq_wait_port() {
    kq_wait_for "${2:-30}" bash -c "[[ -n \"\$(ss -Hltn 'sport = :$1')\" ]]"
}

# kq_wait_http URL [SECONDS]: wait until URL answers 2xx.
kq_wait_http() {
    kq_wait_for "${2:-30}" curl -fsS -o /dev/null --max-time 2 "$1"
}

# kq_free_port: print a free TCP port on 127.0.0.1, below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range): the ports outgoing connections take for themselves and
# bind(0) hands out. A port picked from that range can be taken by any process's connect()
# between the pick and the service's bind, or while a service restarts on its port.
kq_free_port() {
    python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(10000, lo), min(200, max(lo - 10000, 0))) + [0]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break'
}

# kq_bg LOGFILE CMD [ARGS...]: start CMD in the background with stdout/stderr to
# LOGFILE and fd 3 closed; prints its pid. Stop it with kq_stop PID.
kq_bg() {
    local log="$1"
    shift
    "$@" >"$log" 2>&1 3>&- </dev/null &
    echo $!
}

# kq_gone PID: the process has exited (no such pid, or a zombie nobody reaped
# yet: its sockets are closed either way).
kq_gone() {
    local st
    st=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z "$st" || "$st" == Z ]]
}

# kq_kill PID: SIGKILL and wait (up to 10 s) until the process is gone, so that
# its ports are free for the instance started next. A service started with
# kq_bg inside $(...) is not this shell's child: `wait` alone returns at once.
kq_kill() {
    local pid="$1" i=0
    kill -KILL "$pid" 2>/dev/null || return 0
    while ! kq_gone "$pid" && [[ $i -lt 100 ]]; do
        sleep 0.1
        i=$((i + 1))
    done
    wait "$pid" 2>/dev/null || true
}

# kq_stop PID [SECONDS]: SIGTERM, wait, SIGKILL after SECONDS (default 10).
kq_stop() {
    local pid="$1" i=0 n=$((${2:-10} * 10))
    kill -TERM "$pid" 2>/dev/null || return 0
    while ! kq_gone "$pid"; do
        if [[ $i -ge $n ]]; then
            kq_kill "$pid"
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    wait "$pid" 2>/dev/null || true
}

# partition_for ID N: the partition of aggregate ID among N partitions.
# Kafka's murmur2 partitioner, written again in Python: an oracle independent of
# lib/kq_kafka.c.
partition_for() {
    python3 - "$1" "$2" <<'PY'
import sys
def murmur2(data):
    m, r, mask = 0x5bd1e995, 24, 0xffffffff
    h = (0x9747b28c ^ len(data)) & mask
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & mask; k ^= k >> r; k = (k * m) & mask
        h = (h * m) & mask; h ^= k
    rest = data[4 * n:]
    if len(rest) == 3: h ^= rest[2] << 16
    if len(rest) >= 2: h ^= rest[1] << 8
    if len(rest) >= 1: h ^= rest[0]; h = (h * m) & mask
    h ^= h >> 13; h = (h * m) & mask; h ^= h >> 15
    return h
print((murmur2(sys.argv[1].encode()) & 0x7fffffff) % int(sys.argv[2]))
PY
}

# ------------------------------------------------------------------ the suite's broker
# kq_broker_stop / kq_broker_start: stop the Kafka broker setup_suite started
# (a clean shutdown: segments flushed, no log recovery at the next start) and
# start it again on the same ports with the same data. Only when the suite
# started the broker itself (KQ_E2E_DIR; not with KQ_E2E_BROKERS):
# kq_broker_owned tells. kq_broker_data prints its log directory
# (<topic>-<partition>/ segment directories).
kq_broker_owned() { [[ -n "${KQ_E2E_DIR:-}" && -f "$KQ_E2E_DIR/kafka.ports" ]]; }
kq_broker_data() { echo "$KQ_E2E_DIR/kafka/data"; }
kq_broker_stop() { "$KQ_REPO/ops/kafka.sh" stop "$KQ_E2E_DIR/kafka"; }
kq_broker_start() {
    local ports
    read -r -a ports <"$KQ_E2E_DIR/kafka.ports"
    "$KQ_REPO/ops/kafka.sh" start "$KQ_E2E_DIR/kafka" "${ports[0]}" "${ports[1]}" 3>&-
}

# kq_check_metrics URL: the /metrics at URL passes `promtool check metrics`
# (HELP and TYPE for every family, names by the Prometheus conventions; no
# output at all) and carries kcqrs_build_info and the process_* metrics.
kq_check_metrics() {
    local out="$BATS_TEST_TMPDIR/metrics.$RANDOM" rc=0 m
    curl -fsS "$1" >"$out" || kq_fail "GET $1 failed"
    promtool check metrics <"$out" >"$out.lint" 2>&1 || rc=$?
    [[ $rc -eq 0 && ! -s "$out.lint" ]] ||
        kq_fail "promtool check metrics on $1 (exit $rc): $(cat "$out.lint")"
    grep -Eq '^kcqrs_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+",commit="([0-9a-f]{12}(-dirty)?|unknown)"\} 1$' \
        "$out" || kq_fail "no kcqrs_build_info in $1: $(grep build_info "$out")"
    for m in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
        process_open_fds process_max_fds process_start_time_seconds process_threads; do
        grep -Eq "^$m [0-9.e+]+$" "$out" || kq_fail "no $m in $1"
    done
    # the process started within the last day and not in the future
    awk -v now="$(date +%s)" '$1 == "process_start_time_seconds" {
        exit !($2 > now - 86400 && $2 <= now + 1) }' "$out" ||
        kq_fail "process_start_time_seconds is not a plausible start: $(grep '^process_start' "$out")"
}
