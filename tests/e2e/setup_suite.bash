# tests/e2e/setup_suite.bash — one Kafka broker and one PostgreSQL for the whole
# end-to-end suite (bats >= 1.7 runs setup_suite before the first file and
# teardown_suite after the last).
#
# setup_suite:
#   - makes a private directory (mktemp -d /tmp/kcqrs-e2e.XXXXXX),
#   - picks free loopback ports, starts Kafka (ops/kafka.sh) and PostgreSQL
#     (ops/pg.sh --no-fsync) in parallel, each retried on a port clash,
#   - exports KCQRS_BROKERS, KCQRS_PG_DSN, KQ_E2E_DIR, KQ_E2E_PG_PORT, and
#     KCQRS_KEK_FILE (a fresh key-encryption key file)
#     (test files inherit them; helpers.bash sets a per-file
#     KCQRS_TOPIC_PREFIX on top),
#   - starts a watchdog that cleans up if bats itself dies (SIGKILL, or SIGTERM
#     to the `bats` process while a test file is still running).
# teardown_suite stops both servers and removes the directory; bats runs it on
# success, on failure, on Ctrl-C (SIGINT) and, through the TERM/HUP traps set
# here, when the suite process is terminated.
#
# Environment: KQ_E2E_KEEP=1 keeps the directory (logs, data) for a look after
# the run (its path is in the suite output). KQ_E2E_BROKERS / KQ_E2E_PG_DSN: use servers that
# are already running instead of starting any.

KQ_E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# N distinct free TCP ports on 127.0.0.1 (held open together while chosen).
_kq_free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Start one service, choosing new ports when the chosen ones were taken in the
# meantime. Writes the port(s) that worked to $dir/<name>.ports.
_kq_start_kafka() {
    local dir="$1" attempt ports
    for attempt in 1 2 3; do
        read -r -a ports <<<"$(_kq_free_ports 2)"
        if "$KQ_E2E_REPO/ops/kafka.sh" start "$dir/kafka" "${ports[0]}" "${ports[1]}"; then
            echo "${ports[0]} ${ports[1]}" >"$dir/kafka.ports"
            return 0
        fi
        grep -q "already in use" "$dir/kafka.start.log" 2>/dev/null || return 1
    done
    return 1
}

_kq_start_pg() {
    local dir="$1" attempt port
    for attempt in 1 2 3; do
        port=$(_kq_free_ports 1)
        if "$KQ_E2E_REPO/ops/pg.sh" start "$dir/pg" "$port" --no-fsync; then
            echo "$port" >"$dir/pg.ports"
            return 0
        fi
        grep -q "already in use" "$dir/pg.start.log" 2>/dev/null || return 1
    done
    return 1
}

# Runs detached (own session): if the suite process disappears without having
# removed the directory, or the `bats` process above it dies, stop the servers
# and remove the directory.
_KQ_WATCHDOG='
suite=$1 top=$2 dir=$3 repo=$4
cleanup() {
    # A start may still be in progress (the suite died during setup_suite):
    # stop again until no process of ours runs on $dir (at most 90 s).
    i=0
    while :; do
        for k in "$dir"/kafka "$dir"/kafka-*; do
            [ -d "$k" ] && "$repo/ops/kafka.sh" stop "$k" >/dev/null 2>&1 &
        done
        "$repo/ops/pg.sh" stop "$dir/pg" >/dev/null 2>&1 &
        wait
        pgrep -f -- "$dir/(kafka|pg)" >/dev/null 2>&1 || break
        i=$((i + 1))
        [ $i -ge 90 ] && break
        sleep 1
    done
    [ "${KQ_E2E_KEEP:-0}" = 1 ] || rm -rf "$dir"
}
while [ -d "$dir" ]; do
    if ! kill -0 "$suite" 2>/dev/null; then
        cleanup
        exit 0
    fi
    if ! kill -0 "$top" 2>/dev/null; then
        # bats is gone: ask the suite to run teardown_suite (it will once the
        # running test file returns); do it ourselves if that takes too long.
        kill -TERM "$suite" 2>/dev/null
        i=0
        while [ $i -lt 100 ] && [ -d "$dir" ] && kill -0 "$suite" 2>/dev/null; do
            sleep 0.1
            i=$((i + 1))
        done
        [ -d "$dir" ] && cleanup
        exit 0
    fi
    sleep 0.5
done
'

# _kq_make_kek FILE: a KEK file (KCQRS_KEK_FILE, lib/kq_crypto.h) with one
# random version-1 key, mode 0600, unless FILE exists.
_kq_make_kek() {
    [[ -s "$1" ]] && return 0
    (umask 077 && printf '1 %s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$1")
}

setup_suite() {
    local t0 dir kafka_rc=0 pg_rc=0

    # bats handles SIGINT itself (and then runs teardown_suite); SIGTERM and
    # SIGHUP would kill the suite without it, so turn them into an exit, which
    # bats' EXIT trap follows with teardown_suite (bash runs the trap once the
    # test file in progress has finished). bats_exec_suite_status is bats'
    # own exit status (bats-exec-suite 1.8): a terminated run must not pass.
    trap 'bats_exec_suite_status=143; exit 143' TERM
    trap 'bats_exec_suite_status=129; exit 129' HUP

    if [[ -n "${KQ_E2E_BROKERS:-}" && -n "${KQ_E2E_PG_DSN:-}" ]]; then
        export KCQRS_BROKERS="$KQ_E2E_BROKERS" KCQRS_PG_DSN="$KQ_E2E_PG_DSN"
        if [[ -z "${KCQRS_KEK_FILE:-}" ]]; then
            export KCQRS_KEK_FILE
            KCQRS_KEK_FILE="$(mktemp -d /tmp/kcqrs-e2e-kek.XXXXXX)/kek"
        fi
        _kq_make_kek "$KCQRS_KEK_FILE" || return 1
        echo "e2e: using running servers: $KCQRS_BROKERS, $KCQRS_PG_DSN"
        return 0
    fi

    t0=$(date +%s.%N)
    dir=$(mktemp -d /tmp/kcqrs-e2e.XXXXXX)
    export KQ_E2E_DIR="$dir"
    # The watchdog first, so that even an interrupted setup is cleaned up. fd 3
    # is bats' pipe to its formatter: background processes must not hold it.
    setsid bash -c "$_KQ_WATCHDOG" kq-e2e-watchdog "$$" "$PPID" "$dir" "$KQ_E2E_REPO" \
        </dev/null >/dev/null 2>&1 3>&- &
    echo $! >"$dir/watchdog.pid"

    _kq_start_kafka "$dir" >"$dir/kafka.start.log" 2>&1 3>&- &
    _KQ_KAFKA_JOB=$!
    _kq_start_pg "$dir" >"$dir/pg.start.log" 2>&1 3>&- &
    _KQ_PG_JOB=$!
    wait "$_KQ_KAFKA_JOB" || kafka_rc=$?
    wait "$_KQ_PG_JOB" || pg_rc=$?
    cat "$dir/kafka.start.log" "$dir/pg.start.log"
    if [[ $kafka_rc -ne 0 || $pg_rc -ne 0 ]]; then
        echo "e2e: starting Kafka (rc $kafka_rc) or PostgreSQL (rc $pg_rc) failed" >&2
        return 1
    fi

    local kports pgport
    read -r -a kports <"$dir/kafka.ports"
    pgport=$(cat "$dir/pg.ports")
    export KCQRS_BROKERS="127.0.0.1:${kports[0]}"
    export KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$pgport/kcqrs"
    export KQ_E2E_PG_PORT="$pgport"
    # the key-encryption key every kcqrs-commands and kcqrs-worker of the suite uses
    export KCQRS_KEK_FILE="$dir/kek"
    _kq_make_kek "$KCQRS_KEK_FILE" || return 1
    echo "e2e: Kafka $KCQRS_BROKERS and PostgreSQL 127.0.0.1:$pgport ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s ($dir)"
}

teardown_suite() {
    local dir="${KQ_E2E_DIR:-}"
    [[ -n "$dir" && -d "$dir" ]] || return 0

    # Finish the cleanup even if more signals arrive (a terminal closing sends
    # SIGHUP right after the SIGINT/SIGTERM that got us here). It takes a few
    # seconds at most; the watchdog stays up until the end as a backstop.
    trap '' TERM HUP INT
    # Interrupted during setup_suite: let the starts finish (they are bounded)
    # so that stop finds their pid files.
    # (Never a bare `wait`: the watchdog is our child too.)
    local job stops=()
    for job in ${_KQ_KAFKA_JOB:-} ${_KQ_PG_JOB:-}; do
        wait "$job" 2>/dev/null || true
    done
    # The suite's broker, and the clusters test files started in it
    # (tests/e2e/cluster_helpers.bash) if they did not stop them.
    local k
    for k in "$dir"/kafka "$dir"/kafka-*; do
        [[ -d "$k" ]] || continue
        "$KQ_E2E_REPO/ops/kafka.sh" stop "$k" 3>&- &
        stops+=($!)
    done
    "$KQ_E2E_REPO/ops/pg.sh" stop "$dir/pg" 3>&- &
    stops+=($!)
    for job in "${stops[@]}"; do
        wait "$job" || true
    done
    if [[ -f "$dir/watchdog.pid" ]]; then
        kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
    fi
    if [[ "${KQ_E2E_KEEP:-0}" == 1 ]]; then
        echo "e2e: kept $dir (KQ_E2E_KEEP=1)" >&2
    else
        rm -rf "$dir"
    fi
}
