#!/usr/bin/env bats
# commands_fencing.bats — the single writer is fenced: a second kcqrs-commands
# with the same transactional id (same KCQRS_TOPIC_PREFIX, other port, other
# LMDB directory) fences the first, which then refuses commands with 503 and
# says why in its log; no version is ever written twice.

load helpers
load commands_helpers

setup_file() {
    cmd_make_keys
    cmd_start first
}

teardown_file() {
    cmd_stop_all
}

@test "a second instance fences the first: 503 not_writer with Retry-After, the reason logged, no version written twice" {
    cmd_use first
    id=$(new_id)
    create_resource "$id"
    req PUT "/api/v1/resources/$id" '{"name":"v2 by first"}' -H 'If-Match: "1"'
    [ "$CODE" = 200 ]

    cmd_start second
    cmd_use second
    # The second instance rebuilt its state from the log: it knows version 2.
    req PUT "/api/v1/resources/$id" '{"name":"stale"}' -H 'If-Match: "1"'
    assert_error 412
    req PUT "/api/v1/resources/$id" '{"name":"v3 by second"}' -H 'If-Match: "2"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 3"

    # The first still believes version 2 is current. Whatever it does, it must
    # not write another version 3: it is fenced and answers 503.
    cmd_use first
    before=$(ends_sum)
    req PUT "/api/v1/resources/$id" '{"name":"v3 by first?"}' -H 'If-Match: "2"'
    assert_error 503
    assert_retry_after
    # It stays fenced: every later command is refused as not_writer, creates included.
    req POST /api/v1/resources "{\"id\":\"$id-x\",\"name\":\"after fencing\"}"
    assert_error 503
    assert_retry_after
    jcheck "d['code'] == 'not_writer'"
    req DELETE "/api/v1/resources/$id"
    assert_error 503
    # /ready says it is not ready, and the log says why.
    REQ_KEY="" req GET /ready
    [ "$CODE" = 503 ]
    [ "$(metric kcqrs_commands_fenced)" = 1 ]
    grep -qi 'fenc' "$BATS_FILE_TMPDIR/first.log" ||
        kq_fail "first instance's log does not say it was fenced: $(tail -n 20 "$BATS_FILE_TMPDIR/first.log")"
    # An aborted attempt may leave an abort marker; never a record.
    run versions_of "$id"
    echo "$output"
    [ "$(cut -d' ' -f2- <<<"$output")" = "1 ResourceCreated
2 ResourceUpdated
3 ResourceUpdated" ]
    [ "$(dump_topic | awk -v k="$id-x/" 'index($3, k) == 1' | wc -l)" = 0 ]
    BODY=$(dump_of "$id" | awk '$3 ~ /0003$/' | cut -d' ' -f5-)
    jcheck "d['payload'] == {'name': 'v3 by second'}"

    # The new writer carries on.
    cmd_use second
    req PUT "/api/v1/resources/$id" '{"name":"v4 by second"}' -H 'If-Match: "3"'
    [ "$CODE" = 200 ]
    jcheck "d['version'] == 4"
}
