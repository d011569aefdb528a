# tests/e2e/query_workflows_helpers.bash — crafted workflow and run events for
# query_workflows.bats.
#
# Load after helpers, commands_helpers, projector_helpers and replay_helpers.
#
# emit AGG ID VERSION TYPE PAYLOAD_JSON SECONDS: one event (JSON envelope
#   encoded by `kcqrs-events encode`) into <prefix>.AGG.events at ID's
#   partition (murmur2, partition_for) with the record key
#   "ID/<version:020>", occurred at QW_T0 + SECONDS s, written by
#   kq_produce_raw raw (non-transactional).
# at SECONDS: the RFC 3339 µs form of QW_T0 + SECONDS s (what answers carry).
# qw_token AGG ID: a consistency token ("v1." + base64url of
#   topic:partition:offset) of the last record in ID's partition of AGG's topic.
# qg PATH: GET on the query API with the reader key (CODE, BODY, HDRS as req).

QW_T0=1763767000000000

emit() {
    local agg="$1" id="$2" version="$3" type="$4" payload="$5" secs="$6" hex part key
    hex=$(printf '{"event_id":[%d,2,3,4,5,6,71,8,137,10,11,12,13,14,15,%d],"aggregate_type":"%s","aggregate_id":"%s","version":%d,"occurred_at_us":%d,"actor":"e2e","payload_type":"%s","payload":%s}' \
        "$version" "$((RANDOM % 256))" "$agg" "$id" "$version" "$((QW_T0 + secs * 1000000))" \
        "$type" "$payload" | "$KCQRS_BIN/kcqrs-events" encode | od -An -v -tx1 | tr -d ' \n') ||
        return 1
    [[ -n "$hex" ]] || kq_fail "kcqrs-events encode refused $agg $id $version $type" || return 1
    part=$(partition_for "$id" "${KCQRS_PARTITIONS:-6}")
    key=$(printf '%s/%020d' "$id" "$version")
    kq_tool kq_produce_raw raw "$agg" "$part" "$key" --hex "$hex" >/dev/null
}

at() {
    python3 -c 'import datetime, sys
t = datetime.datetime.fromtimestamp((int(sys.argv[1]) + int(sys.argv[2]) * 1000000) / 1e6, datetime.timezone.utc)
print(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))' "$QW_T0" "$1"
}

qw_token() {
    local topic="$KCQRS_TOPIC_PREFIX.$1.events" part hw
    part=$(partition_for "$2" "${KCQRS_PARTITIONS:-6}")
    hw=$(kq_tool kq_offsets ends "$topic" | awk -v p="$part" '$1 == p { print $2 }')
    printf 'v1.%s' "$(printf '%s:%s:%s' "$topic" "$part" "$((hw - 1))" | base64 -w0 | tr '+/' '-_' | tr -d '=')"
}

qg() {
    local saved="$CMD_URL"
    CMD_URL="$(qry_url)"
    REQ_KEY="${QKEY-$KQ_KEY_READER}" req GET "$@"
    CMD_URL="$saved"
}
