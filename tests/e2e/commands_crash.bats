#!/usr/bin/env bats
# commands_crash.bats — kill -9 of kcqrs-commands under a load of creates: every
# command that got a 2xx has its event in the log exactly once (the load keeps
# a ledger, the log is scanned); after a restart, retrying every command of the
# ledger with its Idempotency-Key gives 201 and still exactly one event per id.

load helpers
load commands_helpers

setup_file() {
    cmd_make_keys
    cmd_start main
}

teardown_file() {
    cmd_stop_all
}

@test "kill -9 under load: acknowledged commands are in the log exactly once; retries after restart append nothing twice" {
    ledger="$BATS_TEST_TMPDIR/ledger"
    cmd_use main
    load_start "$CMD_URL" "$ledger" 4
    kq_wait_for 30 bash -c "[[ \$(grep -c ' 201\$' '$ledger') -ge 50 ]]"
    cmd_kill main
    load_stop "$ledger"
    echo "statuses: $(awk '{ print $2 }' "$ledger" | sort | uniq -c | tr '\n' ' ')"
    [ "$(awk '$2 != 201 && $2 != 000 && $2 != 503' "$ledger" | wc -l)" = 0 ]
    # Restart first: the killed producer's transaction may still be open, and
    # it holds back read_committed readers (the last stable offset) until the
    # new instance's init_transactions aborts it, or transaction.timeout.ms.
    cmd_start main
    run ledger_check "$ledger"
    echo "$output"
    [ "$status" -eq 0 ]

    # Retry every command of the ledger with its key and body: first
    # the acknowledged ones (which must append nothing), then the others
    # (each either was committed before the kill, then its original answer
    # comes back, or is committed now).
    retry_all() {
        local id code n w j c
        while read -r id code; do
            n=${id#load-}
            w=${n%%-*}
            n=${n#*-}
            j=${n%%-*}
            c=$(curl -s -o "$BATS_TEST_TMPDIR/retry.body" -w '%{http_code}' --max-time 30 \
                -H "Authorization: Bearer $KQ_KEY_WRITER" -H 'Content-Type: application/json' \
                -H "Idempotency-Key: $id" --data-binary "{\"id\":\"$id\",\"name\":\"load $w $j\"}" \
                "$CMD_URL/api/v1/resources")
            [ "$c" = 201 ] || kq_fail "retry of $id (first answer $code): $c $(cat "$BATS_TEST_TMPDIR/retry.body")" || return 1
            grep -q '"version": *1[,}]' "$BATS_TEST_TMPDIR/retry.body" ||
                kq_fail "retry of $id: not version 1: $(cat "$BATS_TEST_TMPDIR/retry.body")" || return 1
        done
    }
    before=$(ends_sum)
    awk '$2 == 201' "$ledger" | retry_all
    assert_ends_unchanged "$before"
    awk '$2 != 201' "$ledger" | retry_all
    echo "retried $(wc -l <"$ledger") commands"
    # Every ledger id is now in the log exactly once.
    sed -i 's/ [0-9]*$/ 201/' "$ledger"
    run ledger_check "$ledger"
    echo "$output"
    [ "$status" -eq 0 ]
}
