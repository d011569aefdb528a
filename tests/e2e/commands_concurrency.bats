#!/usr/bin/env bats
# commands_concurrency.bats — optimistic concurrency under load: 32 clients
# doing If-Match read-modify-write loops on one resource (tests/tools/kq_hammer)
# get exactly one success per version, and the log holds versions 1..N once
# each, in order, in one partition. Also: concurrent creates of one id (one
# 201, the rest 409) and of distinct ids (group commit: all 201, each once).

load helpers
load commands_helpers

HAMMER_CLIENTS=32
HAMMER_UNTIL=200

setup_file() {
    cmd_make_keys
    cmd_start main
}

teardown_file() {
    cmd_stop_all
}

setup() {
    cmd_use main
}

@test "32 concurrent clients with If-Match: exactly one success per version; the log holds 1..N once each" {
    id=$(new_id)
    create_resource "$id"
    before=$(ends_sum)
    t0=$(date +%s%N)
    run kq_tool kq_hammer --url "$CMD_URL" --key "$KQ_KEY_WRITER" --id "$id" \
        --clients "$HAMMER_CLIENTS" --until "$HAMMER_UNTIL" --timeout 90
    echo "kq_hammer ($(((($(date +%s%N) - t0)) / 1000000)) ms, exit $status):"
    echo "$output" | grep -v '^version .* successes 1$' || true
    [ "$status" -eq 0 ]
    # Every version 2..N got exactly one 200; no other version got any.
    expected=$(for v in $(seq 2 "$HAMMER_UNTIL"); do echo "version $v successes 1"; done)
    [ "$(grep '^version ' <<<"$output")" = "$expected" ]
    [[ "$output" == *"total ok=$((HAMMER_UNTIL - 1)) "* ]]
    [[ "$output" == *" unexpected=0 max_version=$HAMMER_UNTIL"* ]]

    # The log: versions 1..N, once each, in offset order, all in one partition;
    # each update is the one a client was told succeeded.
    run versions_of "$id"
    [ "$(cut -d' ' -f1 <<<"$output" | sort -u | wc -l)" = 1 ]
    [ "$(cut -d' ' -f2 <<<"$output")" = "$(seq 1 "$HAMMER_UNTIL")" ]
    [ "$(cut -d' ' -f3 <<<"$output" | sort | uniq -c | awk '{ print $2 "=" $1 }' | tr '\n' ' ')" = \
        "ResourceCreated=1 ResourceUpdated=$((HAMMER_UNTIL - 1)) " ]
    # Each ResourceUpdated carries the description its winning client wrote for
    # exactly that version.
    dump_of "$id" | cut -d' ' -f5- | python3 -c '
import json, re, sys
for line in sys.stdin:
    d = json.loads(line)
    if d["payload_type"] != "ResourceUpdated":
        continue
    m = re.fullmatch(r"client \d+ writes version (\d+)", d["payload"].get("description", ""))
    if not m or int(m.group(1)) != d["version"]:
        sys.exit("version %d holds %r" % (d["version"], d["payload"]))
'
    # A stale writer still fails afterwards.
    req PUT "/api/v1/resources/$id" '{"name":"late"}' -H "If-Match: \"$((HAMMER_UNTIL - 1))\""
    assert_error 412
}

@test "32 concurrent creates of one id: exactly one 201, the others 409; one event" {
    id=$(new_id)
    seq 1 32 | xargs -P 32 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 \
        -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
        --data-binary "{\"id\":\"$id\",\"name\":\"racer {}\"}" "$CMD_URL/api/v1/resources" \
        >"$BATS_TEST_TMPDIR/codes"
    run sort "$BATS_TEST_TMPDIR/codes"
    echo "$output" | uniq -c
    [ "$(grep -c '^201$' <<<"$output")" = 1 ]
    [ "$(grep -c '^409$' <<<"$output")" = 31 ]
    run versions_of "$id"
    [ "$(cut -d' ' -f2- <<<"$output")" = "1 ResourceCreated" ]
}

@test "64 concurrent creates of distinct ids: all 201, each id once in the log with version 1" {
    prefix="bulk-$RANDOM$RANDOM"
    seq 1 64 | xargs -P 32 -I{} curl -s -o /dev/null -w '{} %{http_code}\n' --max-time 30 \
        -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
        --data-binary "{\"id\":\"$prefix-{}\",\"name\":\"bulk {}\"}" "$CMD_URL/api/v1/resources" \
        >"$BATS_TEST_TMPDIR/codes"
    run awk '{ print $2 }' "$BATS_TEST_TMPDIR/codes"
    [ "$(grep -c '^201$' <<<"$output")" = 64 ]
    dump_topic | awk -v p="$prefix-" 'index($3, p) == 1 { print $3 }' | sort >"$BATS_TEST_TMPDIR/keys"
    run cat "$BATS_TEST_TMPDIR/keys"
    [ "$(wc -l <<<"$output")" = 64 ]
    [ "$(sort -u <<<"$output" | wc -l)" = 64 ]
    [ "$(grep -vc '/00000000000000000001$' <<<"$output")" = 0 ]
}

@test "32 concurrent retries of one Idempotency-Key (3 rounds): all get the same 201 answer; one event" {
    for round in 1 2 3; do
        id="$(new_id)-$round"
        rm -f "$BATS_TEST_TMPDIR"/answer.*
        seq 1 32 | xargs -P 32 -I{} curl -s -o "$BATS_TEST_TMPDIR/answer.{}" -w '%{http_code}\n' --max-time 30 \
            -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
            -H "Idempotency-Key: same-$id" --data-binary "{\"id\":\"$id\",\"name\":\"once\"}" \
            "$CMD_URL/api/v1/resources" >"$BATS_TEST_TMPDIR/codes" || true
        run sort "$BATS_TEST_TMPDIR/codes"
        echo "round $round: $(uniq -c <<<"$output" | tr '\n' ' ')"
        [ "$(grep -c '^201$' <<<"$output")" = 32 ]
        [ "$(cat "$BATS_TEST_TMPDIR"/answer.* | sort -u | wc -l)" = 1 ]
        run versions_of "$id"
        [ "$(cut -d' ' -f2- <<<"$output")" = "1 ResourceCreated" ]
    done
}
