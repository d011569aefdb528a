# tests/e2e/cluster_helpers.bash — a private Kafka cluster (3 KRaft nodes by
# default) for end-to-end and fault tests, on free ports in a directory of the
# test run. Load it after helpers.bash:   load helpers; load cluster_helpers
# (a script outside bats may source it too, with KQ_REPO set).
#
#   kq_cluster_start DIR [NODES]   start NODES nodes (ops/kafka.sh) in DIR on free
#                                  ports (new ones on a clash); exports KQ_CLUSTER_DIR
#                                  and KQ_CLUSTER_BROKERS (host:port,...)
#   kq_cluster_node ACTION N       ops/kafka.sh ACTION of node N of $KQ_CLUSTER_DIR:
#                                  start, stop, kill (SIGKILL), restart, pause, resume
#   kq_cluster_port N              the broker port of node N
#   kq_cluster_stop                stop every node (data kept)
#   kq_cluster_dir NAME            where a test file keeps cluster NAME: under the
#                                  suite's directory ($KQ_E2E_DIR/kafka-NAME, which the
#                                  suite's teardown and watchdog stop as well) or
#                                  $BATS_FILE_TMPDIR/kafka-NAME
#
# Every call writes ops/kafka.sh's output to $KQ_CLUSTER_DIR/ops.log and keeps
# bats' fd 3 closed for the brokers. On failure it prints that log.

kq_cluster_dir() {
    local base="${KQ_E2E_DIR:-${BATS_FILE_TMPDIR:-/tmp}}"
    echo "$base/kafka-${1//[^A-Za-z0-9_.-]/_}"
}

# A loaded CI machine may take minutes to start JVMs: be patient by default.
_kq_cluster_ops() {
    KQ_KAFKA_START_TIMEOUT=${KQ_KAFKA_START_TIMEOUT:-180} \
        "$KQ_REPO/ops/kafka.sh" "$@" >>"$KQ_CLUSTER_DIR/ops.log" 2>&1 3>&-
}

kq_cluster_start() {
    local dir="$1" nodes="${2:-3}" attempt ports kp cp i
    mkdir -p "$dir"
    export KQ_CLUSTER_DIR
    KQ_CLUSTER_DIR=$(cd "$dir" && pwd)
    for attempt in 1 2 3; do
        if [[ -f "$KQ_CLUSTER_DIR/cluster.conf" ]]; then
            _kq_cluster_ops start "$KQ_CLUSTER_DIR" && break
        else
            read -r -a ports <<<"$(python3 - "$((2 * nodes))" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
            kp= cp=
            for ((i = 0; i < nodes; i++)); do
                kp+="${kp:+,}${ports[i]}"
                cp+="${cp:+,}${ports[nodes + i]}"
            done
            _kq_cluster_ops start "$KQ_CLUSTER_DIR" "$kp" "$cp" && break
        fi
        if ! grep -q "already in use" "$KQ_CLUSTER_DIR/ops.log" || [[ $attempt == 3 ]]; then
            cat "$KQ_CLUSTER_DIR/ops.log" >&2
            return 1
        fi
        # A clash: stop what started and try other ports.
        _kq_cluster_ops stop "$KQ_CLUSTER_DIR" || true
        rm -rf "${KQ_CLUSTER_DIR:?}"/node* "$KQ_CLUSTER_DIR/cluster.conf"
    done
    export KQ_CLUSTER_BROKERS
    KQ_CLUSTER_BROKERS=$(sed -n 's/^ports=//p' "$KQ_CLUSTER_DIR/cluster.conf" |
        tr , '\n' | sed 's/^/127.0.0.1:/' | paste -sd, -)
}

kq_cluster_node() {
    if ! _kq_cluster_ops "$1" "$KQ_CLUSTER_DIR" "$2"; then
        tail -n 30 "$KQ_CLUSTER_DIR/ops.log" >&2
        return 1
    fi
}

kq_cluster_port() {
    sed -n 's/^ports=//p' "$KQ_CLUSTER_DIR/cluster.conf" | cut -d, -f"$1"
}

kq_cluster_stop() {
    [[ -n "${KQ_CLUSTER_DIR:-}" && -d "$KQ_CLUSTER_DIR" ]] || return 0
    _kq_cluster_ops stop "$KQ_CLUSTER_DIR"
}
