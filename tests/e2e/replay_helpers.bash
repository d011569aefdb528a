# tests/e2e/replay_helpers.bash — kcqrs-replay black-box helpers (replay_*.bats).
#
# Load after helpers, commands_helpers and projector_helpers.
#
# replay ARGS...: run build/bin/kcqrs-replay ARGS with KCQRS_LMDB_DIR=$PROJ_LMDB
#   in the foreground (at most 300 s), its stdout and stderr into $output-like
#   files: sets RP_STATUS, RP_OUT (stdout) and RP_ERR (stderr); everything is
#   also appended to $BATS_FILE_TMPDIR/replay.log.
# rmtool ARGS...: kq_rmtool (dump/offsets/del of an LMDB environment).
# live_dir / snap_dir NAME: the live model's and a named snapshot's directories.
# qry_start / qry_stop / qry_url: one kcqrs-query on $PROJ_LMDB.
# fold_until US: the expected resources at time US (occurred_at <= US), folded
#   from the log (kq_offsets dump), in kq_rmtool dump's format.

replay() {
    local d="$BATS_TEST_TMPDIR"
    proj_init
    echo "--- kcqrs-replay $*" >>"$BATS_FILE_TMPDIR/replay.log"
    RP_STATUS=0
    KCQRS_LMDB_DIR="$PROJ_LMDB" timeout 300 "$KCQRS_BIN/kcqrs-replay" "$@" \
        >"$d/replay.out" 2>"$d/replay.err" 3>&- </dev/null || RP_STATUS=$?
    RP_OUT=$(cat "$d/replay.out")
    RP_ERR=$(cat "$d/replay.err")
    cat "$d/replay.out" "$d/replay.err" >>"$BATS_FILE_TMPDIR/replay.log"
    echo "kcqrs-replay $* -> $RP_STATUS"
    echo "$RP_OUT"
    echo "$RP_ERR" | tail -n 20
}

rmtool() { kq_tool kq_rmtool "$@"; }
live_dir() { echo "$PROJ_LMDB/readmodel"; }
snap_dir() { echo "$PROJ_LMDB/snapshots/$1"; }

qry_start() {
    local port
    proj_init
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/qry.url"
    KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_QUERY_ADDR="127.0.0.1:$port" \
        kq_bg "$BATS_FILE_TMPDIR/qry.log.$(date +%s%N)" "$KCQRS_BIN/kcqrs-query" \
        >"$BATS_FILE_TMPDIR/qry.pid"
    kq_wait_port "$port" 30
}
qry_stop() {
    [[ -f "$BATS_FILE_TMPDIR/qry.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/qry.pid")" 10
    rm -f "$BATS_FILE_TMPDIR/qry.pid"
}
qry_url() { cat "$BATS_FILE_TMPDIR/qry.url"; }

# qry_code ID: HTTP status of GET /api/v1/resources/ID.
qry_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        -H "Authorization: Bearer $KQ_KEY_READER" "$(qry_url)/api/v1/resources/$1"
}

fold_until() {
    kq_tool kq_offsets dump "$KCQRS_TOPIC_PREFIX.resource.events" >"$BATS_TEST_TMPDIR/fold.dump" ||
        return 1
    python3 - "$1" "$BATS_TEST_TMPDIR/fold.dump" <<'PY'
import json, sys
t = int(sys.argv[1])
state, version = {}, {}
for line in open(sys.argv[2]):
    part, off, key, etype, js = line.rstrip("\n").split(" ", 4)
    e = json.loads(js)
    if "undecodable" in e:
        continue
    if e["occurred_at_us"] > t:
        continue
    i, v = e["aggregate_id"], e["version"]
    if v != version.get(i, 0) + 1:
        continue
    version[i] = v
    p = e.get("payload", {})
    if etype == "ResourceCreated":
        state[i] = {"status": p.get("status", "active"), "name": p.get("name", ""), "v": v}
    elif etype == "ResourceUpdated" and i in state:
        s = state[i]
        if "name" in p: s["name"] = p["name"]
        if "status" in p: s["status"] = p["status"]
        s["v"] = v
    elif etype == "ResourceDeleted":
        state.pop(i, None)
for i in sorted(state, key=lambda s: s.encode()):
    s = state[i]
    print(i, s["status"], s["v"], s["name"])
PY
}
