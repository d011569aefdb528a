# tests/faults/lib.bash — the fault campaign's pieces (sourced by tests/faults/run.sh).
#
# State lives in $FL_DIR: <name>.pid and <name>.port per process, urls (the
# command URLs the load uses), faults (one line per fault:
# "<start_ms> <end_ms> <kind> [detail]", read by kq_faults check), the logs.
#
#   fl_start_infra NODES     Kafka (1 node, or a cluster of NODES via ops/kafka.sh)
#                            and PostgreSQL on free ports; exports the KCQRS_* settings
#   fl_start_services        kcqrs-commands (slot 0), -projector, -query, -worker
#   fl_lane_services END     service faults in turn until END (epoch seconds)
#   fl_lane_brokers END      broker faults in turn until END
#   fl_heal_all              everything running and in sync again
#   fl_stop_everything       stop all of it (SIGCONT first: a paused process too)
#
# Every fault is logged as "fault <kind> ..." on the lane's output and appended
# to $FL_DIR/faults; something that did not go as planned is a "warn" line,
# something that breaks a promise (e.g. a fenced writer still ready) "FAIL".

fl_ms() { date +%s%3N; }
fl_say() { echo "faults: $*" >&2; }
fl_fault_log() { echo "$*" >>"$FL_DIR/faults"; }

# N free loopback TCP ports, held together while chosen (tests/e2e/setup_suite.bash).
fl_free_ports() { _kq_free_ports "$1"; }

# Does ops/kafka.sh run clusters (node control by number)?
fl_cluster_supported() { grep -q 'kill|restart' "$REPO/ops/kafka.sh"; }

fl_env() { "$@"; } # the settings are exported; kept as a hook for one place to change

# A process of ours alive (a zombie counts as dead)?
fl_alive() {
    local pid=$1 st
    [[ -n "$pid" ]] || return 1
    st=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

fl_pid() { cat "$FL_DIR/$1.pid" 2>/dev/null; }
fl_port() { cat "$FL_DIR/$1.port"; }
fl_url() { echo "http://127.0.0.1:$(fl_port "$1")"; }

# fl_wait_for SECONDS CMD...: run CMD every 0.2 s until it succeeds.
fl_wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [[ $(date +%s) -ge $deadline ]] && return 1
        sleep 0.2
    done
}

fl_http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-3}" "$1"; }
fl_ready() { [[ $(fl_http_code "$(fl_url "$1")/ready") == 200 ]]; }

# ------------------------------------------------------------------ Kafka
KAFKA_NODES_RUNNING=1

# A cluster through tests/e2e/cluster_helpers.bash (ops/kafka.sh), or one node.
fl_start_kafka() {
    local nodes=$1 ports attempt
    if [[ $nodes -ge 2 ]]; then
        kq_cluster_start "$FL_DIR/kafka" "$nodes" || return 1
        echo "$KQ_CLUSTER_BROKERS" >"$FL_DIR/kafka.brokers"
        return 0
    fi
    for attempt in 1 2 3; do
        read -r -a ports <<<"$(fl_free_ports 2)"
        if "$REPO/ops/kafka.sh" start "$FL_DIR/kafka" "${ports[0]}" "${ports[1]}" \
            >"$FL_DIR/kafka.start.log" 2>&1; then
            echo "127.0.0.1:${ports[0]}" >"$FL_DIR/kafka.brokers"
            return 0
        fi
        grep -q "already in use" "$FL_DIR/kafka.start.log" || break
    done
    cat "$FL_DIR/kafka.start.log" >&2
    return 1
}

fl_start_pg() {
    local port attempt
    for attempt in 1 2 3; do
        port=$(fl_free_ports 1)
        if "$REPO/ops/pg.sh" start "$FL_DIR/pg" "$port" --no-fsync >"$FL_DIR/pg.start.log" 2>&1; then
            echo "$port" >"$FL_DIR/pg.port"
            return 0
        fi
        grep -q "already in use" "$FL_DIR/pg.start.log" || break
    done
    cat "$FL_DIR/pg.start.log" >&2
    return 1
}

fl_start_infra() {
    local nodes=$1 krc=0 prc=0 kj pj
    KAFKA_NODES_RUNNING=$nodes
    echo "$nodes" >"$FL_DIR/kafka.nodes"
    fl_start_kafka "$nodes" &
    kj=$!
    fl_start_pg &
    pj=$!
    wait "$kj" || krc=$?
    wait "$pj" || prc=$?
    [[ $krc -eq 0 && $prc -eq 0 ]] || return 1
    export KCQRS_BROKERS
    KCQRS_BROKERS=$(cat "$FL_DIR/kafka.brokers")
    export KQ_CLUSTER_DIR="$FL_DIR/kafka"
    export KCQRS_PG_DSN="postgresql://kcqrs@127.0.0.1:$(cat "$FL_DIR/pg.port")/kcqrs"
    export KCQRS_TOPIC_PREFIX=faults
    export KCQRS_LMDB_DIR="$FL_DIR/proj"
    export KCQRS_KEYS_FILE="$FL_DIR/keys"
    export KCQRS_KEK_FILE="$FL_DIR/kek"
    [[ -s "$KCQRS_KEK_FILE" ]] ||
        (umask 077 && printf '1 %s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$KCQRS_KEK_FILE")
    export KCQRS_QUERY_WAIT_MS=10000
    if [[ $nodes -ge 3 ]]; then
        export KCQRS_REPLICATION_FACTOR=3 KCQRS_MIN_INSYNC_REPLICAS=2
    fi
    mkdir -p "$KCQRS_LMDB_DIR"
    fl_say "Kafka $KCQRS_BROKERS, PostgreSQL $KCQRS_PG_DSN"
}

# Node N's broker pid (a cluster), or the single node's.
fl_kafka_pid() {
    if [[ -f "$FL_DIR/kafka/node$1/kafka.pid" ]]; then
        cat "$FL_DIR/kafka/node$1/kafka.pid"
    else
        cat "$FL_DIR/kafka/kafka.pid"
    fi
}
# fl_kafka ACTION N: start, kill, pause, resume node N (tests/e2e/cluster_helpers.bash).
fl_kafka() { kq_cluster_node "$1" "$2" 2>>"$FL_DIR/kafka.ops.log"; }

# "<topic> <partition> <leader> <isr,...>" of every event partition now.
fl_meta() { timeout 20 "$TOOLS/kq_faults" meta 2>/dev/null; }

# Every event partition has a leader and all NODES replicas in sync.
fl_in_sync() {
    local m
    m=$(fl_meta) || return 1
    [[ -n "$m" ]] || return 1
    awk -v n="$KAFKA_NODES_RUNNING" '$3 < 0 || split($4, a, ",") < n { bad = 1 } END { exit bad }' <<<"$m"
}

# A busy partition's leader: partition 0..5 of the resource topic at random.
fl_busy_leader() {
    local p=$((RANDOM % 6))
    fl_meta | awk -v t="$KCQRS_TOPIC_PREFIX.resource.events" -v p="$p" '$1 == t && $2 == p && $3 > 0 { print $3, $2; exit }'
}

# ------------------------------------------------------------------ services
fl_make_keys() {
    local role
    for role in writer reader admin auditor; do
        "$BIN/kcqrs-keys" create --name "faults-$role" --roles "$role" --file "$KCQRS_KEYS_FILE" \
            >"$FL_DIR/$role.key" || return 1
    done
    (umask 077 && "$BIN/kcqrs-keys" create --name faults-worker --roles worker \
        --file "$KCQRS_KEYS_FILE" >"$FL_DIR/worker.key") || return 1
}

# fl_run NAME ENV... -- BIN ARGS...: start a service in the background; pid in NAME.pid.
fl_run() {
    local name=$1 pid
    shift
    local envs=()
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    echo "--- $(date -u +%T.%3N) start ${envs[*]}" >>"$FL_DIR/$name.log"
    env "${envs[@]}" "$@" >>"$FL_DIR/$name.log" 2>&1 </dev/null &
    pid=$!
    disown "$pid" # no "Killed" notes from bash: the faults kill on purpose
    echo "$pid" >"$FL_DIR/$name.pid"
}

fl_port_of() { # allocate once
    [[ -f "$FL_DIR/$1.port" ]] || fl_free_ports 1 >"$FL_DIR/$1.port"
    cat "$FL_DIR/$1.port"
}

# Commands slot S (0 or 1): own port and LMDB directory, the one transactional id.
# No per-address connection limit: every load client connects from 127.0.0.1.
fl_cmd_start() {
    local s=$1 port iport
    port=$(fl_port_of "cmd$s")
    iport=$(fl_port_of "cmd$s-internal")
    mkdir -p "$FL_DIR/cmd$s-lmdb"
    fl_run "cmd$s" KCQRS_COMMANDS_ADDR="127.0.0.1:$port" \
        KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$iport" KCQRS_LMDB_DIR="$FL_DIR/cmd$s-lmdb" \
        KCQRS_HTTP_MAX_PER_IP=0 -- "$BIN/kcqrs-commands"
}

fl_proj_start() { # [ENV...]
    local port
    port=$(fl_port_of proj)
    fl_run proj KCQRS_PROJECTOR_ADDR="127.0.0.1:$port" "$@" -- "$BIN/kcqrs-projector"
}

fl_proj_stop() { fl_term "$(fl_pid proj)" 20; }

# fl_term PID [SECONDS]: SIGCONT, SIGTERM, SIGKILL after SECONDS.
fl_term() {
    local pid=$1 i=0 n=$((${2:-10} * 10))
    fl_alive "$pid" || return 0
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    while ! fl_gone "$pid"; do
        if [[ $i -ge $n ]]; then
            kill -KILL "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
}

# Gone for good: no process, or a zombie whose threads have all exited (a killed
# multi-threaded process shows its leader as a zombie while the other threads
# still hold its files, its listening socket among them).
fl_gone() {
    local pid=$1
    [[ -d /proc/$pid ]] || return 0
    grep -q '^State:.Z' "/proc/$pid/status" 2>/dev/null &&
        [[ $(ls "/proc/$pid/task" 2>/dev/null | wc -l) -le 1 ]]
}

fl_kill9() {
    kill -KILL "$1" 2>/dev/null
    fl_wait_for 10 fl_gone "$1"
}

# fl_cmd_up S: start commands slot S and wait for /ready (180 s), starting it
# again whenever it exits before that.
fl_cmd_up() {
    local s=$1 deadline=$(($(date +%s) + 180))
    fl_cmd_start "$s"
    while ! fl_ready "cmd$s"; do
        if [[ $(date +%s) -ge $deadline ]]; then
            echo "warn cmd$s not ready within 180 s"
            return 1
        fi
        if ! fl_alive "$(fl_pid "cmd$s")"; then
            echo "warn cmd$s exited before it was ready: $(grep -v ' http ' "$FL_DIR/cmd$s.log" | tail -n 1)"
            sleep 1
            fl_cmd_start "$s"
        fi
        sleep 0.2
    done
}

fl_start_services() {
    local qport wport
    echo 0 >"$FL_DIR/writer.slot"
    fl_cmd_up 0 || { tail -n 30 "$FL_DIR/cmd0.log" >&2; return 1; }
    fl_url cmd0 >"$FL_DIR/urls"
    fl_proj_start
    fl_wait_for 120 fl_ready proj || { tail -n 30 "$FL_DIR/proj.log" >&2; return 1; }
    qport=$(fl_port_of query)
    fl_run query KCQRS_QUERY_ADDR="127.0.0.1:$qport" -- "$BIN/kcqrs-query"
    fl_wait_for 60 fl_ready query || { tail -n 30 "$FL_DIR/query.log" >&2; return 1; }
    wport=$(fl_port_of worker)
    fl_run worker KCQRS_WORKER_ADDR="127.0.0.1:$wport" KCQRS_WORKER_KEY_FILE="$FL_DIR/worker.key" \
        KCQRS_WORKER_COMMANDS_URL="$(fl_url cmd0)" -- "$BIN/kcqrs-worker"
    fl_wait_for 60 fl_ready worker || { tail -n 30 "$FL_DIR/worker.log" >&2; return 1; }
}

# ------------------------------------------------------------------ service faults
fl_writer_slot() { cat "$FL_DIR/writer.slot"; }

# kill -9 of the writer, restart in the same slot (same LMDB snapshot), wait /ready.
fault_commands_kill() {
    local s t0 pid
    s=$(fl_writer_slot)
    pid=$(fl_pid "cmd$s")
    t0=$(fl_ms)
    fl_kill9 "$pid"
    sleep "0.$((RANDOM % 10))"
    fl_cmd_up "$s"
    fl_fault_log "$t0" "$(fl_ms)" commands_kill9 "cmd$s"
    echo "fault commands_kill9 cmd$s pid $pid down $(($(fl_ms) - t0)) ms"
}

# The zombie writer: SIGSTOP the writer, start another instance (which fences it),
# SIGCONT the first while the load still sends to it; it must be fenced.
fault_zombie_writer() {
    local s o t0 zpid fenced ready nready
    s=$(fl_writer_slot)
    o=$((1 - s))
    zpid=$(fl_pid "cmd$s")
    t0=$(fl_ms)
    kill -STOP "$zpid"
    fl_cmd_up "$o"
    # both in the load's list; the zombie wakes up
    { fl_url "cmd$s"; fl_url "cmd$o"; } >"$FL_DIR/urls.tmp" && mv "$FL_DIR/urls.tmp" "$FL_DIR/urls"
    kill -CONT "$zpid"
    # The zombie learns it was fenced at its next transaction (the clients send to
    # it); with brokers down at the same time that can take a while.
    fl_wait_for 30 bash -c "curl -s --max-time 3 '$(fl_url "cmd$s")/metrics' | grep -qx 'kcqrs_commands_fenced 1'"
    ready=$(fl_http_code "$(fl_url "cmd$s")/ready")
    fenced=$(curl -s --max-time 3 "$(fl_url "cmd$s")/metrics" | awk '$1 == "kcqrs_commands_fenced" { print $2 }')
    nready=$(fl_http_code "$(fl_url "cmd$o")/ready")
    # What it answered the clients is judged by the checker (every 2xx in the log);
    # here: it must be fenced, and must not call itself ready.
    if [[ "$ready" == 200 && "$nready" != 200 ]]; then
        # The zombie re-initialised its producer (its transaction timed out rather
        # than failing as fenced) and so fenced the newer instance: it is the
        # writer again. Keep it, stop the other.
        echo "FAIL zombie_writer: cmd$s took the writer role back (it answers /ready 200, cmd$o $nready)"
        echo "cmd$s" >>"$FL_DIR/zombie.retook"
        touch "$FL_DIR/keep"
        fl_url "cmd$s" >"$FL_DIR/urls.tmp" && mv "$FL_DIR/urls.tmp" "$FL_DIR/urls"
        sleep 0.5
        fl_term "$(fl_pid "cmd$o")" 10
    else
        if [[ "$ready" == 200 ]]; then
            echo "FAIL zombie_writer: after SIGCONT the fenced cmd$s answers /ready 200 (cmd$o $nready)"
            echo "cmd$s" >>"$FL_DIR/zombie.ready"
            touch "$FL_DIR/keep"
        elif [[ "$fenced" != 1 ]]; then
            echo "warn zombie_writer: cmd$s did not report kcqrs_commands_fenced 1 within 30 s (/ready $ready)"
        fi
        fl_url "cmd$o" >"$FL_DIR/urls.tmp" && mv "$FL_DIR/urls.tmp" "$FL_DIR/urls"
        sleep 0.5
        echo "$o" >"$FL_DIR/writer.slot"
        fl_term "$zpid" 10
    fi
    fl_fault_log "$t0" "$(fl_ms)" zombie_writer "cmd$s->cmd$o ready=$ready fenced=$fenced"
    echo "fault zombie_writer cmd$s -> cmd$o: zombie /ready $ready fenced $fenced"
}

FL_POINTS=(lmdb_after_put pg_after_insert lmdb_before_commit pg_before_commit lmdb_after_commit
    pg_after_commit)
FL_POINT_I=0

# kill -9 of the projector at a failpoint (it kills itself there), then restart.
fault_projector_failpoint() {
    local point=${FL_POINTS[$((FL_POINT_I % ${#FL_POINTS[@]}))]} n=$((RANDOM % 3 + 1)) t0 pid
    FL_POINT_I=$((FL_POINT_I + 1))
    t0=$(fl_ms)
    fl_proj_stop
    fl_proj_start KCQRS_FAILPOINT="$point:$n"
    pid=$(fl_pid proj)
    if fl_wait_for 30 fl_gone "$pid"; then
        fl_fault_log "$t0" "$(fl_ms)" projector_failpoint "$point:$n"
        echo "fault projector_failpoint $point:$n"
    else
        echo "warn projector_failpoint: $point:$n not reached within 30 s"
        fl_proj_stop
    fi
    fl_proj_start
    fl_wait_for 120 fl_ready proj || echo "warn projector not ready within 120 s after $point"
}

fault_pg_restart() {
    local t0
    t0=$(fl_ms)
    "$REPO/ops/pg.sh" stop "$FL_DIR/pg" >>"$FL_DIR/pg.ops.log" 2>&1
    sleep "$((RANDOM % 3 + 1))"
    "$REPO/ops/pg.sh" start "$FL_DIR/pg" "$(cat "$FL_DIR/pg.port")" --no-fsync \
        >>"$FL_DIR/pg.ops.log" 2>&1 || echo "warn pg_restart: start failed"
    fl_fault_log "$t0" "$(fl_ms)" pg_restart
    echo "fault pg_restart down $(($(fl_ms) - t0)) ms"
    fl_wait_for 120 fl_ready proj || echo "warn projector not ready within 120 s after the PostgreSQL restart"
}

# The projector's LMDB map fills up: restart it with a map barely above the
# read model's size; it must log MDB_MAP_FULL, keep running and lose nothing.
fault_lmdb_map_full() {
    local t0 mb pid before
    t0=$(fl_ms)
    fl_proj_stop
    mb=$(($(stat -c %s "$FL_DIR/proj/readmodel/data.mdb" 2>/dev/null || echo 0) / 1048576 + 1))
    before=$(grep -c MDB_MAP_FULL "$FL_DIR/proj.log")
    fl_proj_start KCQRS_LMDB_MAP_MB="$mb"
    pid=$(fl_pid proj)
    touch "$FL_DIR/big" # the load's updates grow: the map fills within seconds
    if fl_wait_for 90 bash -c "[[ \$(grep -c MDB_MAP_FULL '$FL_DIR/proj.log') -gt $before ]]"; then
        sleep 1
        if fl_alive "$pid"; then
            fl_fault_log "$t0" "$(fl_ms)" lmdb_map_full "map ${mb} MiB"
            echo "fault lmdb_map_full map $mb MiB: MDB_MAP_FULL logged, projector alive"
        else
            echo "FAIL lmdb_map_full: the projector died on MDB_MAP_FULL"
            touch "$FL_DIR/keep"
            fl_fault_log "$t0" "$(fl_ms)" lmdb_map_full_crash "map ${mb} MiB"
        fi
    else
        echo "warn lmdb_map_full: no MDB_MAP_FULL within 90 s (map $mb MiB)"
    fi
    rm -f "$FL_DIR/big"
    fl_proj_stop
    fl_proj_start
    fl_wait_for 120 fl_ready proj || echo "warn projector not ready within 120 s after the map fault"
}

fl_lane_services() {
    local end=$1 i=0
    local kinds=(commands_kill zombie_writer projector_failpoint pg_restart projector_failpoint
        commands_kill lmdb_map_full zombie_writer)
    while [[ $(date +%s) -lt $end ]]; do
        "fault_${kinds[$((i % ${#kinds[@]}))]}"
        i=$((i + 1))
        sleep "$((RANDOM % 3 + 1))"
    done
    echo "lane services: $i faults"
}

# ------------------------------------------------------------------ broker faults
fl_wait_in_sync() {
    local what=$1
    if ! fl_wait_for 180 fl_in_sync; then
        echo "warn $what: partitions not back in sync within 180 s: $(fl_meta | tr '\n' ';')"
        return 1
    fi
}

# kill -9 of node N, down for a few seconds, restart.
fault_broker_kill() {
    local role=$1 n leader part t0 pid
    read -r leader part <<<"$(fl_busy_leader)"
    [[ -n "$leader" ]] || { echo "warn broker_kill: no leader found"; sleep 2; return; }
    if [[ $role == leader ]]; then
        n=$leader
    else
        n=$(((leader % KAFKA_NODES_RUNNING) + 1))
    fi
    pid=$(fl_kafka_pid "$n")
    t0=$(fl_ms)
    fl_kafka kill "$n" || kill -KILL "$pid"
    sleep "$((RANDOM % 6 + 2))"
    fl_kafka start "$n" || echo "warn broker_kill: node $n did not start"
    fl_fault_log "$t0" "$(fl_ms)" "broker_kill9_$role" "node $n (partition $part led by $leader)"
    echo "fault broker_kill9_$role node $n down $(($(fl_ms) - t0)) ms"
    fl_wait_in_sync "broker_kill9_$role"
}

# SIGSTOP the leader of a busy partition for longer than the session timeout.
fault_leader_pause() {
    local n part t0 session hold
    read -r n part <<<"$(fl_busy_leader)"
    [[ -n "$n" ]] || { echo "warn leader_pause: no leader found"; sleep 2; return; }
    session=$(sed -n 's/^broker.session.timeout.ms=//p' "$FL_DIR/kafka/node$n/server.properties" 2>/dev/null)
    session=${session:-9000}
    hold=$((session / 1000 + 3 + RANDOM % 4))
    t0=$(fl_ms)
    fl_kafka pause "$n" || kill -STOP "$(fl_kafka_pid "$n")"
    sleep "$hold"
    fl_kafka resume "$n" || kill -CONT "$(fl_kafka_pid "$n")"
    fl_fault_log "$t0" "$(fl_ms)" leader_sigstop "node $n for ${hold} s (session ${session} ms, partition $part)"
    echo "fault leader_sigstop node $n for $hold s"
    fl_wait_in_sync leader_sigstop
}

# Two brokers killed at once (one of them a busy partition's leader).
fault_two_down() {
    local a b part t0 t1 t2 ja jb
    read -r a part <<<"$(fl_busy_leader)"
    [[ -n "$a" ]] || { echo "warn two_down: no leader found"; sleep 2; return; }
    b=$(((a % KAFKA_NODES_RUNNING) + 1))
    t0=$(fl_ms)
    kill -KILL "$(fl_kafka_pid "$a")" "$(fl_kafka_pid "$b")" 2>/dev/null
    t1=$(fl_ms)
    sleep "$((RANDOM % 6 + 5))"
    t2=$(fl_ms)
    fl_fault_log "$t1" "$t2" two_brokers_down "nodes $a $b"
    fl_kafka start "$a" &
    ja=$!
    fl_kafka start "$b" &
    jb=$!
    wait "$ja" "$jb"
    fl_fault_log "$t0" "$(fl_ms)" two_brokers_kill9 "nodes $a $b"
    echo "fault two_brokers_kill9 nodes $a $b down $(($(fl_ms) - t0)) ms"
    fl_wait_in_sync two_brokers_kill9
}

fl_lane_brokers() {
    local end=$1 i=0
    local kinds=("broker_kill leader" "broker_kill follower" leader_pause two_down)
    fl_wait_in_sync start
    while [[ $(date +%s) -lt $end ]]; do
        # shellcheck disable=SC2086
        fault_${kinds[$((i % ${#kinds[@]}))]}
        i=$((i + 1))
        sleep "$((RANDOM % 3 + 1))"
    done
    echo "lane brokers: $i faults"
}

# ------------------------------------------------------------------ end
fl_heal_all() {
    local n s
    if [[ $KAFKA_NODES_RUNNING -ge 3 ]]; then
        for ((n = 1; n <= KAFKA_NODES_RUNNING; n++)); do
            kill -CONT "$(fl_kafka_pid "$n")" 2>/dev/null
            fl_alive "$(fl_kafka_pid "$n")" || fl_kafka start "$n"
        done
        fl_wait_in_sync heal
    fi
    "$REPO/ops/pg.sh" status "$FL_DIR/pg" >/dev/null 2>&1 ||
        "$REPO/ops/pg.sh" start "$FL_DIR/pg" "$(cat "$FL_DIR/pg.port")" --no-fsync >>"$FL_DIR/pg.ops.log" 2>&1
    s=$(fl_writer_slot)
    fl_ready "cmd$s" || fl_alive "$(fl_pid "cmd$s")" || fl_cmd_up "$s" >&2
    fl_wait_for 180 fl_ready "cmd$s" || fl_say "warn: the writer cmd$s is not ready"
    fl_alive "$(fl_pid proj)" || fl_proj_start
    fl_wait_for 120 fl_ready proj || fl_say "warn: the projector is not ready"
}

fl_stop_everything() {
    local name
    [[ -n "${FL_DIR:-}" && -d "$FL_DIR" ]] || return 0
    for name in load isr; do
        fl_term "$(fl_pid "$name")" 10
    done
    for name in worker query proj cmd0 cmd1; do
        fl_term "$(fl_pid "$name")" 10
    done
    if [[ -d "$FL_DIR/kafka" ]]; then
        for n in 1 2 3 4 5; do kill -CONT "$(fl_kafka_pid "$n" 2>/dev/null)" 2>/dev/null; done
        "$REPO/ops/kafka.sh" stop "$FL_DIR/kafka" >/dev/null 2>&1 &
    fi
    [[ -d "$FL_DIR/pg" ]] && "$REPO/ops/pg.sh" stop "$FL_DIR/pg" >/dev/null 2>&1 &
    wait
}
