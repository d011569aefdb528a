# tests/e2e/workflows_helpers.bash — workflows, runs and worker attempts on
# kcqrs-commands, checked through the Kafka log (workflows.bats).
#
# Load after helpers and commands_helpers:
#     load helpers
#     load commands_helpers
#     load workflows_helpers
#
# Keys. wf_make_keys runs cmd_make_keys and adds a worker key (name
# e2e-worker, role worker) to the same keys file: KQ_KEY_WORKER.
#
# Topics. wf_topic / run_topic name this file's workflow and run topics;
# all_ends_sum prints the sum of the end offsets of the resource, workflow
# and run topics (transaction markers included: "unchanged" proves nothing
# was produced, not even an aborted transaction); assert_all_unchanged BEFORE
# fails when it moved.
#
# Events. agg_types TOPIC ID prints "version event_type" per record of
# aggregate ID (in offset order); agg_event TOPIC ID VERSION prints the
# record's envelope as JSON (kq_offsets dump), which `BODY=$(...)` +
# jcheck can inspect.
#
# Requests. wf_create ID [ACTIONS_JSON] creates workflow ID (201 checked)
# with the given actions (default: one http action) and sets WF_SECRET to
# the answered webhook_secret. attempt RUN STEP ATTEMPT OUTCOME [EXTRA_JSON]
# posts one attempt with the worker key (EXTRA_JSON is merged fields such as
# "\"next_delay_ms\":100"); hook WF SECRET [BODY [CURL_ARGS...]] posts to the
# webhook with X-Webhook-Secret (SECRET "-" sends no header). hub_sig SECRET
# BODY prints the X-Hub-Signature-256 value of BODY (sha256=<hex HMAC>);
# err_code prints the error code of the last answer.

wf_make_keys() {
    cmd_make_keys || return 1
    KQ_KEY_WORKER=$("$KCQRS_BIN/kcqrs-keys" create --name e2e-worker --roles worker \
        --file "$KCQRS_KEYS_FILE") || return 1
    export KQ_KEY_WORKER
}

wf_topic() { echo "$KCQRS_TOPIC_PREFIX.workflow.events"; }
run_topic() { echo "$KCQRS_TOPIC_PREFIX.run.events"; }

all_ends_sum() {
    local d="$BATS_TEST_TMPDIR" t i=0 total=0 n rc=0 pids=()
    # the three topics at once: each kq_offsets waits for settled transactions
    for t in "$(resource_topic)" "$(wf_topic)" "$(run_topic)"; do
        rm -f "$d/ends.$i"
        kq_tool kq_offsets sum "$t" >"$d/ends.$i" &
        pids+=($!)
        i=$((i + 1))
    done
    for i in 0 1 2; do
        wait "${pids[$i]}" || rc=1
    done
    [[ $rc == 0 ]] || return 1
    for i in 0 1 2; do
        n=$(cat "$d/ends.$i")
        [[ "$n" =~ ^[0-9]+$ ]] || return 1
        total=$((total + n))
    done
    echo "$total"
}

assert_all_unchanged() {
    local now
    now=$(all_ends_sum)
    [[ "$now" == "$1" ]] || kq_fail "end offsets moved: $1 -> $now (a rejected command appended)"
}

# Records of aggregate ID in TOPIC: the dump lines, in offset order per partition.
_agg_dump() {
    kq_tool kq_offsets dump "$1" | awk -v p="$2/" 'index($3, p) == 1 && length($3) == length(p) + 20' |
        sort -k1,1n -k2,2n
}

agg_types() {
    _agg_dump "$1" "$2" | awk '{ n = split($3, a, "/"); print a[n] + 0, $4 }'
}

agg_event() {
    _agg_dump "$1" "$2" | awk -v k="$(printf '%s/%020d' "$2" "$3")" '$3 == k' | cut -d' ' -f5-
}

HTTP_ACTION='{"type":"http","name":"notify","method":"POST","url":"https://hooks.example.com/in/{{payload.id}}","headers":{"X-Team":"ops"},"body_template":"{\"id\": \"{{payload.id}}\"}"}'
MAIL_ACTION='{"type":"email","to":["ops@example.com"],"subject":"run {{payload.id}}","body_template":"hello"}'

wf_create() {
    local id="$1" actions="${2:-[$HTTP_ACTION]}"
    req POST /api/v1/workflows "{\"id\":\"$id\",\"name\":\"wf $id\",\"actions\":$actions}"
    [[ "$CODE" == 201 ]] || kq_fail "create workflow $id: expected 201, got $CODE: $BODY"
    WF_SECRET=$(jf 'd["webhook_secret"]')
}

attempt() {
    local run="$1" step="$2" n="$3" outcome="$4" extra="${5:-}"
    local body="{\"step\":$step,\"attempt\":$n,\"duration_ms\":7,\"delivery_id\":\"$run.$step\",\"outcome\":\"$outcome\"${extra:+,$extra}}"
    REQ_KEY="${ATTEMPT_KEY-$KQ_KEY_WORKER}" req POST "/internal/v1/runs/$run/attempts" "$body"
}

hook() {
    local wf="$1" secret="$2" body='{"id":"h1"}'
    [[ $# -ge 3 ]] && body="$3"
    shift $(($# < 3 ? $# : 3))
    if [[ "$secret" == - ]]; then
        REQ_KEY="" req POST "/hooks/$wf" "$body" "$@"
    else
        REQ_KEY="" req POST "/hooks/$wf" "$body" -H "X-Webhook-Secret: $secret" "$@"
    fi
}

hub_sig() {
    python3 -c 'import hashlib, hmac, sys
print("sha256=" + hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$1" "$2"
}

err_code() { jf 'd["code"]'; }

wf_new_id() { echo "wf-$BATS_TEST_NUMBER-$RANDOM$RANDOM"; }
