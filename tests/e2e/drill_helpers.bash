# tests/e2e/drill_helpers.bash — the disaster drill (drill.bats): load
# through the command API, record what the query API answers, lose the
# stores, rebuild them from the log, compare.
#
# Load after helpers, commands_helpers and projector_helpers.
#
# drill_load URL N: N commands through kcqrs-commands at URL, from 16 client
#   threads on keep-alive connections (python3, standard library): creates of
#   ids d-<n> (names with quotes, backslashes, non-ASCII and control
#   characters, so a byte comparison of answers means something), updates of
#   name/description/status and deletes, each with its Idempotency-Key. Every
#   command must answer 2xx (503 is retried with the same key); prints
#   "commands=N created=C updated=U deleted=D" and writes the newest
#   consistency token of each partition to $BATS_FILE_TMPDIR/tokens.
# drill_query_start / drill_query_stop: kcqrs-query on a free port reading
#   $PROJ_LMDB and $KCQRS_PG_DSN; its URL in $BATS_FILE_TMPDIR/query.url.
# drill_snapshot DIR: record the query API's answers (status line + body,
#   byte for byte) for a fixed sample into DIR: 50 resources by id (deleted
#   ones included), every page of the resource list, 10 resources' events,
#   5 audit queries. drill_compare A B fails naming every answer that differs.
# drill_admin_psql ARGS...: psql as the superuser on the test cluster's
#   postgres database (to drop and create the file's database).

drill_load() {
    python3 - "$1" "$2" "$KQ_KEY_WRITER" "$BATS_FILE_TMPDIR/tokens" <<'PY'
import base64, http.client, json, random, sys, threading, time, urllib.parse

url, n, key, tokens_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
u = urllib.parse.urlsplit(url)
THREADS = 16
rng = random.Random(20261122)
# The plan: creates first for each id, then updates and deletes; ids are split
# between threads so each id's commands run in order on one connection.
ncreate = n * 3 // 10
ndelete = n // 10
nupdate = n - ncreate - ndelete
ids = [f"d-{i:05d}" for i in range(ncreate)]
plan = [[] for _ in range(THREADS)]
for i, rid in enumerate(ids):
    # Names refuse control characters (issue #19); descriptions keep TAB, LF
    # and CR, so the read models still carry them byte for byte.
    name = rng.choice(["plain", "quote \" back \\ slash", "caf\u00e9 \u20ac \U0001F600",
                       "tab here", "<b>&amp;</b>", "line break"]) + f" {i}"
    body = {"id": rid, "name": name, "status": rng.choice(["active", "inactive", "archived"])}
    desc = rng.choice([None, "tab\there", "line\nbreak", "crlf\r\nend"])
    if desc is not None:
        body["description"] = desc
    plan[i % THREADS].append(("POST", "/api/v1/resources", body))
for k in range(nupdate):
    i = rng.randrange(ncreate)
    body = rng.choice([{"name": f"renamed {k} \u00fc"}, {"description": f"desc {k} \"q\""},
                       {"status": rng.choice(["active", "inactive", "archived"])},
                       {"name": f"both {k}", "status": "archived"}])
    plan[i % THREADS].append(("PUT", f"/api/v1/resources/{ids[i]}", body))
victims = rng.sample(range(ncreate), ndelete)
for i in victims:
    plan[i % THREADS].append(("DELETE", f"/api/v1/resources/{ids[i]}", None))
deleted = set(ids[i] for i in victims)
# an update of a deleted resource is refused (404): keep per-id order, drop those
for t in range(THREADS):
    seen_del, keep = set(), []
    for m, p, b in plan[t]:
        rid = p.rsplit("/", 1)[1] if m != "POST" else b["id"]
        if rid in seen_del:
            continue
        if m == "DELETE":
            seen_del.add(rid)
        keep.append((m, p, b))
    # deletes after all updates of the same id (updates were appended before deletes)
    plan[t] = keep

tokens, errors, counts = {}, [], {"POST": 0, "PUT": 0, "DELETE": 0}
lock = threading.Lock()

def worker(t):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for j, (m, p, b) in enumerate(plan[t]):
        data = json.dumps(b).encode() if b is not None else None
        hdrs = {"Authorization": "Bearer " + key, "Idempotency-Key": f"drill-{t}-{j}"}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        for attempt in range(100):
            try:
                conn.request(m, p, body=data, headers=hdrs)
                r = conn.getresponse()
                body = r.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                time.sleep(0.05)
                continue
            if r.status in (429, 503):
                time.sleep(0.05)
                continue
            break
        if r.status // 100 != 2:
            with lock:
                errors.append(f"{m} {p} -> {r.status} {body[:200]!r}")
            return
        tok = json.loads(body)["consistency_token"]
        raw = tok[3:] + "=" * (-len(tok[3:]) % 4)
        topic, part, off = base64.urlsafe_b64decode(raw).decode().rsplit(":", 2)
        part = topic + ":" + part
        with lock:
            counts[m] += 1
            if int(off) >= tokens.get(part, (-1, ""))[0]:
                tokens[part] = (int(off), tok)  # the newest position of each partition

threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
t0 = time.time()
for th in threads:
    th.start()
for th in threads:
    th.join()
for e in errors[:10]:
    print("ERROR", e, file=sys.stderr)
with open(tokens_file, "w") as f:
    for off, tok in tokens.values():
        f.write(tok + "\n")
total = sum(counts.values())
print(f"commands={total} created={counts['POST']} updated={counts['PUT']} "
      f"deleted={counts['DELETE']} seconds={time.time() - t0:.1f}")
sys.exit(1 if errors or total == 0 else 0)
PY
}

drill_query_start() {
    local port
    port=$(kq_free_port)
    echo "http://127.0.0.1:$port" >"$BATS_FILE_TMPDIR/query.url"
    KCQRS_LMDB_DIR="$PROJ_LMDB" KCQRS_QUERY_ADDR="127.0.0.1:$port" KCQRS_QUERY_WAIT_MS=10000 \
        kq_bg "$BATS_FILE_TMPDIR/query.log" "$KCQRS_BIN/kcqrs-query" >"$BATS_FILE_TMPDIR/query.pid"
    kq_wait_port "$port" 30
}

drill_query_stop() {
    [[ -f "$BATS_FILE_TMPDIR/query.pid" ]] && kq_stop "$(cat "$BATS_FILE_TMPDIR/query.pid")" 10
    rm -f "$BATS_FILE_TMPDIR/query.pid"
}

drill_query_url() { cat "$BATS_FILE_TMPDIR/query.url"; }

# drill_get KEY PATH OUTFILE [CURL_ARGS...]: status line then body, byte for byte.
drill_get() {
    local key="$1" path="$2" out="$3" code
    shift 3
    code=$(curl -sS -o "$out.body" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer $key" \
        "$@" "$(drill_query_url)$path") || code=curl-failed
    { echo "$code"; cat "$out.body"; } >"$out"
    rm -f "$out.body"
}

drill_snapshot() {
    local dir="$1" i id cursor page=0 tok
    rm -rf "$dir"
    mkdir -p "$dir"
    # wait until both read models applied the last command of every thread
    while read -r tok; do
        drill_get "$KQ_KEY_READER" "/api/v1/resources?limit=1" "$dir/wait" -H "X-Consistency-Token: $tok"
        [[ $(head -n 1 "$dir/wait") == 200 ]] || kq_fail "LMDB did not apply $tok: $(cat "$dir/wait")" || return 1
        drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?limit=1" "$dir/wait" -H "X-Consistency-Token: $tok"
        [[ $(head -n 1 "$dir/wait") == 200 ]] || kq_fail "PostgreSQL did not apply $tok: $(cat "$dir/wait")" || return 1
    done <"$BATS_FILE_TMPDIR/tokens"
    rm -f "$dir/wait"
    for i in $(seq 0 57 2850); do
        id=$(printf 'd-%05d' "$i")
        drill_get "$KQ_KEY_READER" "/api/v1/resources/$id" "$dir/get.$id"
    done
    cursor=
    while :; do
        page=$((page + 1))
        drill_get "$KQ_KEY_READER" "/api/v1/resources?limit=1000${cursor:+&cursor=$cursor}" "$dir/list.$page"
        [[ $(head -n 1 "$dir/list.$page") == 200 ]] || kq_fail "list page $page: $(head -c 300 "$dir/list.$page")" || return 1
        cursor=$(tail -n +2 "$dir/list.$page" | python3 -c 'import json, sys; print(json.load(sys.stdin)["next_cursor"] or "")')
        [[ -n "$cursor" ]] || break
    done
    drill_get "$KQ_KEY_READER" "/api/v1/resources?status=archived&limit=1000" "$dir/list.archived"
    for i in $(seq 3 283 2850); do
        id=$(printf 'd-%05d' "$i")
        drill_get "$KQ_KEY_READER" "/api/v1/resources/$id/events" "$dir/events.$id"
    done
    drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?aggregate_type=resource&limit=1000" "$dir/audit.1"
    drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?event_type=ResourceDeleted&limit=1000" "$dir/audit.2"
    drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?aggregate_id=d-00017" "$dir/audit.3"
    drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?actor=e2e-writer&event_type=ResourceUpdated&limit=500" "$dir/audit.4"
    drill_get "$KQ_KEY_AUDITOR" "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&limit=1000&aggregate_type=resource&event_type=ResourceCreated" "$dir/audit.5"
    ls "$dir" | wc -l
}

drill_compare() {
    local a="$1" b="$2" f bad=0
    for f in "$a"/*; do
        if ! cmp -s "$f" "$b/${f##*/}"; then
            echo "differs: ${f##*/}: before $(head -c 200 "$f") / after $(head -c 200 "$b/${f##*/}" 2>/dev/null)" >&2
            bad=$((bad + 1))
        fi
    done
    [[ $(ls "$a" | wc -l) == $(ls "$b" | wc -l) ]] || { echo "answer counts differ" >&2; bad=$((bad + 1)); }
    [[ $bad -eq 0 ]]
}

drill_admin_psql() {
    local base="${KCQRS_PG_DSN%/*}"
    psql -X -q -At -v ON_ERROR_STOP=1 -d "${base/kcqrs@/postgres@}/postgres" "$@"
}
