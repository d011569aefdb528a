# bench/bench_commands.sh — the `commands` phase of bench/run.sh (issue #3),
# sourced by run.sh; uses its variables (BUILD, BDIR, LOGS, RAW, TMP, BROKERS,
# PIN_SERVER, PIN_CLIENT, CMD_*) and helpers (die, run_prog, free_ports).
#
# One run (bench_commands RUN) measures, on the broker run.sh started:
#   1. commands.noop   bench_http_kqnoop (lib/kq_http, the service's route,
#                      auth and JSON-body path, answering 201 at once) under
#                      wrk -t1 -c64 with bench/wrk_create.lua: the HTTP ceiling;
#   2. commands.create kcqrs-commands (fresh topic prefix and LMDB dir), after
#                      six sequential creates (two per writer producer) and
#                      an unmeasured wrk warm-up of CMD_SVC_WARM_SECS, under
#                      the same wrk load: accepted (201) commands/s; its
#                      /metrics before and after give the average batch size B
#                      (events per transaction) of the measured run and a
#                      cross-check (events appended >= 201s);
#   3. commands.rate   bench_rate at R = half of this run's commands.create
#                      rate, open loop, 64 connections: p50/p99 latency;
#   4. commands.raw_txn bench_txn_envelopes --batch B: a raw transactional
#                      producer writing the same envelopes in transactions of
#                      B records: the Kafka ceiling (the issue's baseline);
#   5. commands.raw_txn3 the same with 3 transactional producers taken in
#                      turn, as the service's writer does (CMD_WRITER_PRODUCERS):
#                      the Kafka ceiling of the service's own scheme.
# The servers run on CPU 0 and wrk/bench_rate on the last CPU (as the http
# phase); the raw producer and the broker are not pinned (as the kafka phase).
# Any non-201 answer or socket error fails the run.

# cmd_wait_http URL PID SECONDS: wait until URL answers 200 (or PID dies).
cmd_wait_http() {
    local url=$1 pid=$2 secs=$3 i
    for i in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# cmd_keep_log SRC DST: keep a server's log without its access lines (one per
# request: tens of MB at full rate), which are counted instead.
cmd_keep_log() {
    {
        grep -v ' http POST /api/v1/resources 201 ' "$1" || true
        echo "bench: $(grep -c ' http POST /api/v1/resources 201 ' "$1" || true) access-log lines of 201 answers omitted"
    } >>"$2"
}

# cmd_wrk NAME RUN SECS PORT TAG: wrk against a started server; appends the
# WRK line to the log and sets WRK_LINE. Fails on any error or non-201 answer.
cmd_wrk() {
    local name=$1 run=$2 secs=$3 port=$4 tag=$5 rc=0 log="$LOGS/$1.$2.log"
    BENCH_ID_TAG=$tag BENCH_KEY=$CMD_KEY "${PIN_CLIENT[@]}" wrk -t1 -c"$CMD_CONNS" -d"${secs}s" \
        --latency -s bench/wrk_create.lua "http://127.0.0.1:$port/api/v1/resources" \
        >>"$log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { tail -n 20 "$log" >&2; die "wrk failed with exit status $rc ($name, run $run)"; }
    WRK_LINE=$(grep '^WRK ' "$log" | tail -n 1) || die "no summary from wrk ($name, run $run, see $log)"
    python3 - "$WRK_LINE" <<'PY' || { tail -n 20 "$log" >&2; die "$name run $run rejected (see $log)"; }
import sys
kv = dict(f.split("=", 1) for f in sys.argv[1].split()[1:])
if int(kv["errors"]) or int(kv["non201"]):
    sys.exit(f"wrk saw {kv['errors']} socket errors and {kv['non201']} answers other than 201 "
             f"(first status {kv['first_status']})")
if int(kv["requests"]) == 0:
    sys.exit("wrk made no requests")
PY
}

# cmd_warm_producers PORT RUN: sequential creates, two per transactional
# producer of the writer (it takes its 3 producers in turn), so each producer's
# first transactions on the fresh topics (metadata, partitions added for the
# first time) happen before wrk starts, as the raw producers' warm-up
# transactions do. Each must answer 201.
cmd_warm_producers() {
    local port=$1 run=$2 i code
    for i in 1 2 3 4 5 6; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
            -H "Authorization: Bearer $CMD_KEY" -H 'Content-Type: application/json' \
            -d "{\"id\":\"warm-$run-$i\",\"name\":\"warm-up\"}" \
            "http://127.0.0.1:$port/api/v1/resources") || code=000
        [ "$code" = 201 ] || die "warm-up create $i answered $code (run $run)"
    done
}

# wrk_field LINE KEY
wrk_field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# cmd_emit RUN LINE...: add result lines (run-tagged) to $RAW unless warming up.
cmd_emit() {
    local run=$1 l
    shift
    [ "$run" = warmup ] && return 0
    for l in "$@"; do printf 'run=%s of=%s %s\n' "$run" "$CMD_RUNS" "$l" >>"$RAW"; done
}

cmd_setup() {
    [ -n "${CMD_KEY:-}" ] && return 0
    CMD_KEYS_FILE="$TMP/cmd-keys"
    [[ -s "$TMP/kek" ]] || "$BUILD/bin/kcqrs-keys" kek-add --file "$TMP/kek" >/dev/null || die "cannot create a KEK file"
    CMD_KEY=$("$BUILD/bin/kcqrs-keys" create --name bench --roles writer --file "$CMD_KEYS_FILE") ||
        die "kcqrs-keys create failed"
    [ -n "$CMD_KEY" ] || die "kcqrs-keys printed no key"
}

# cmd_env RUN: the environment shared by the service and both baselines.
cmd_env() {
    local run=$1
    CMD_PREFIX="kqbench$$r${run}"
    mkdir -p "$TMP/lmdb-$run"
    CMD_ENV=(KCQRS_BROKERS="$BROKERS" KCQRS_TOPIC_PREFIX="$CMD_PREFIX" KCQRS_LMDB_DIR="$TMP/lmdb-$run"
        KCQRS_KEYS_FILE="$CMD_KEYS_FILE" KCQRS_KEK_FILE="$TMP/kek" KCQRS_HTTP_MAX_PER_IP=0)
}

# cmd_metrics PORT: "<batch_size_sum> <batch_size_count> <events_appended>"
# from the service's /metrics, and the whole text on stderr-free stdout.
cmd_metrics() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk '/^kcqrs_commands_batch_size_sum / { s = $2 }
        /^kcqrs_commands_batch_size_count / { c = $2 }
        /^kcqrs_commands_events_appended_total / { a = $2 }
        /^kcqrs_commands_/ { lines = lines $0 "\n" }
        END { if (c == "") exit 1; printf "%d %d %d\n%s", s, c, a, lines }'
}

# bench_commands RUN [SECS]
bench_commands() {
    local run=$1 secs=${2:-$CMD_SECS} rsecs=$CMD_RATE_SECS xsecs=$CMD_RAW_SECS
    local port iport log req dur rate batch appended half srv m0 m1 s0 c0 a0 s1 c1 a1
    if [ "$run" = warmup ]; then rsecs=2 xsecs=3; fi
    cmd_setup
    cmd_env "$run"

    # 1. the no-op handler on kq_http
    log="$LOGS/commands-noop.$run.log"
    : >"$log"
    port=$(free_ports | cut -d' ' -f1)
    rm -f "$TMP/kqnoop.port"
    env "${CMD_ENV[@]}" KCQRS_COMMANDS_ADDR="127.0.0.1:$port" "${PIN_SERVER[@]}" \
        "$BDIR/bench_http_kqnoop" --port-file "$TMP/kqnoop.port" >"$TMP/kqnoop.out" 2>"$TMP/kqnoop.err" &
    HTTP_PID=$!
    cmd_wait_http "http://127.0.0.1:$port/ready" "$HTTP_PID" 10 ||
        { cat "$TMP/kqnoop.out" "$TMP/kqnoop.err" >&2; die "bench_http_kqnoop did not start"; }
    cmd_wrk commands-noop "$run" "$secs" "$port" "n$run"
    kill -TERM "$HTTP_PID"
    wait "$HTTP_PID" || die "bench_http_kqnoop exited with status $? (run $run)"
    HTTP_PID=
    cat "$TMP/kqnoop.out" >>"$log"
    cmd_keep_log "$TMP/kqnoop.err" "$log"
    req=$(wrk_field "$WRK_LINE" requests)
    dur=$(wrk_field "$WRK_LINE" duration_us)
    srv=$(sed -n 's/^RESULT name=commands.noop.server_requests .*value=//p' "$log")
    [ -n "$srv" ] && [ "$srv" -ge "$req" ] || die "wrk counted $req requests but bench_http_kqnoop answered ${srv:-none} (run $run)"
    cmd_emit "$run" \
        "name=commands.noop unit=req/s value=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.1f", r / (d / 1e6) }') connections=$CMD_CONNS seconds=$secs" \
        "name=commands.noop.p99 unit=ms value=$(awk -v v="$(wrk_field "$WRK_LINE" p99_us)" 'BEGIN { printf "%.3f", v / 1000 }')"

    # 2. kcqrs-commands under the same load
    log="$LOGS/commands-service.$run.log"
    : >"$log"
    read -r port iport < <(free_ports)
    env "${CMD_ENV[@]}" KCQRS_COMMANDS_ADDR="127.0.0.1:$port" \
        KCQRS_COMMANDS_INTERNAL_ADDR="127.0.0.1:$iport" "${PIN_SERVER[@]}" \
        "$BUILD/bin/kcqrs-commands" >"$TMP/cmd.out" 2>"$TMP/cmd.err" &
    CMD_PID=$!
    cmd_wait_http "http://127.0.0.1:$port/ready" "$CMD_PID" 90 ||
        { tail -n 30 "$TMP/cmd.err" >&2; die "kcqrs-commands did not become ready (run $run)"; }
    # A fresh instance's first transactions (new topics: partitions added to
    # the transaction for the first time, connections) take up to ~0.3 s; the
    # raw producer gets an unmeasured warm-up transaction, so this gets a
    # short unmeasured wrk run. /metrics is read before and after the measured
    # run, and B is the average batch of the measured run only.
    cmd_warm_producers "$port" "$run"
    cmd_wrk commands-service "$run" "$CMD_SVC_WARM_SECS" "$port" "cw$run"
    m0=$(cmd_metrics "$port") || die "GET /metrics failed (run $run)"
    cmd_wrk commands-service "$run" "$secs" "$port" "c$run"
    m1=$(cmd_metrics "$port") || die "GET /metrics failed (run $run)"
    printf '%s\n' "$m1" | grep '^kcqrs_commands_' >>"$log"
    read -r s0 c0 a0 <<<"$m0"
    read -r s1 c1 a1 <<<"$m1"
    batch=$(awk -v s="$((s1 - s0))" -v c="$((c1 - c0))" 'BEGIN { if (c > 0) printf "%.2f", s / c }')
    appended=$((a1 - a0))
    req=$(wrk_field "$WRK_LINE" requests)
    dur=$(wrk_field "$WRK_LINE" duration_us)
    [ -n "$batch" ] || die "no transactions counted in kcqrs_commands_batch_size during the run (run $run)"
    [ "$appended" -ge "$req" ] || die "wrk counted $req answers 201 but the service appended $appended events (run $run)"
    rate=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.1f", r / (d / 1e6) }')
    half=$(awk -v r="$rate" 'BEGIN { printf "%.0f", r / 2 }')
    cmd_emit "$run" \
        "name=commands.create unit=cmd/s value=$rate baseline=commands.noop target=>=0.5x connections=$CMD_CONNS seconds=$secs" \
        "name=commands.create.vs_raw unit=cmd/s value=$rate baseline=commands.raw_txn target=>=0.25x" \
        "name=commands.create.vs_raw3 unit=cmd/s value=$rate baseline=commands.raw_txn3" \
        "name=commands.create.p50 unit=ms value=$(awk -v v="$(wrk_field "$WRK_LINE" p50_us)" 'BEGIN { printf "%.3f", v / 1000 }')" \
        "name=commands.create.p99 unit=ms value=$(awk -v v="$(wrk_field "$WRK_LINE" p99_us)" 'BEGIN { printf "%.3f", v / 1000 }') baseline=commands.noop.p99" \
        "name=commands.batch_size unit=events/txn value=$batch"

    # 3. fixed rate at half this run's maximum
    run_prog commands-rate "$run" "${PIN_CLIENT[@]}" "$BDIR/bench_rate" \
        --url "http://127.0.0.1:$port/api/v1/resources" --key "$CMD_KEY" --rate "$half" \
        --seconds "$rsecs" --connections "$CMD_CONNS" --tag "r$run" --name commands.rate
    if [ "$run" != warmup ]; then
        # run_prog added the lines; tag them with the commands phase's run count
        sed -i "s/^run=$run name=commands\.rate/run=$run of=$CMD_RUNS name=commands.rate/" "$RAW"
    fi
    kill -TERM "$CMD_PID"
    wait "$CMD_PID" || die "kcqrs-commands exited with status $? after SIGTERM (run $run)"
    CMD_PID=
    cmd_keep_log "$TMP/cmd.err" "$log"

    # 4. the raw transactional producer, same envelopes, same batch size
    run_prog commands-raw "$run" env "${CMD_ENV[@]}" KCQRS_TOPIC_PREFIX="${CMD_PREFIX}raw" \
        "$BDIR/bench_txn_envelopes" --batch "$batch" --seconds "$xsecs"
    [ "$run" = warmup ] || sed -i "s/^run=$run name=commands\.raw_txn/run=$run of=$CMD_RUNS name=commands.raw_txn/" "$RAW"

    # 5. the same with the writer's scheme: 3 producers taken in turn
    run_prog commands-raw3 "$run" env "${CMD_ENV[@]}" KCQRS_TOPIC_PREFIX="${CMD_PREFIX}raw3" \
        "$BDIR/bench_txn_envelopes" --batch "$batch" --seconds "$xsecs" --producers 3 --name commands.raw_txn3
    [ "$run" = warmup ] || sed -i "s/^run=$run name=commands\.raw_txn3/run=$run of=$CMD_RUNS name=commands.raw_txn3/" "$RAW"
    echo "bench:   create $rate cmd/s, batch $batch events/txn, rate run at $half/s" >&2
}
