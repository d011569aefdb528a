#!/usr/bin/env bats
# kcqrs-keys end to end: create prints a key once, the file holds only its
# SHA-256 with mode 0600, duplicate names are refused, list hides hashes, a
# broken file is named with its line and gives exit 1.

bats_require_minimum_version 1.5.0

setup() {
    ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
    BIN="${KCQRS_BIN:-$ROOT/build/bin}"
    KEYS="$BIN/kcqrs-keys"
    T="$BATS_TEST_TMPDIR"
    if [ ! -x "$KEYS" ]; then
        echo "$KEYS is missing: build it first (make build/bin/kcqrs-keys)" >&2
        return 1
    fi
}

@test "create prints one key once and stores only its SHA-256, mode 0600" {
    run --separate-stderr "$KEYS" create --name alice --roles admin,writer --file "$T/keys"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    key="$output"
    [[ "$key" =~ ^kq_[A-Za-z0-9_-]{43}$ ]]
    [ "$(stat -c %a "$T/keys")" = "600" ]
    hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    [ "$(cat "$T/keys")" = "alice admin,writer $hash" ]
    ! grep -q -- "$key" "$T/keys"
    # a second key is different
    run --separate-stderr "$KEYS" create --name bob --roles reader --file "$T/keys"
    [ "$status" -eq 0 ]
    [ "$output" != "$key" ]
    [ "$(wc -l < "$T/keys")" -eq 2 ]
}

@test "a duplicate name is refused and leaves the file unchanged" {
    "$KEYS" create --name alice --roles reader --file "$T/keys" >/dev/null
    cp "$T/keys" "$T/before"
    run --separate-stderr "$KEYS" create --name alice --roles writer --file "$T/keys"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ "$stderr" == *"'alice' exists already"* ]]
    cmp "$T/keys" "$T/before"
}

@test "list prints names and roles, never hashes" {
    "$KEYS" create --name alice --roles admin --file "$T/keys" >/dev/null
    "$KEYS" create --name svc.worker-1 --roles worker,reader --file "$T/keys" >/dev/null
    run --separate-stderr "$KEYS" list --file "$T/keys"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "alice admin" ]
    [ "${lines[1]}" = "svc.worker-1 reader,worker" ]
    [ "${#lines[@]}" -eq 2 ]
    ! [[ "$output" =~ [0-9a-f]{64} ]]
}

@test "a broken keys file gives a clear error naming the line, exit 1" {
    "$KEYS" create --name alice --roles admin --file "$T/keys" >/dev/null
    echo "bob superuser 0000000000000000000000000000000000000000000000000000000000000000" >> "$T/keys"
    run --separate-stderr "$KEYS" list --file "$T/keys"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ "$stderr" == *"keys:2: unknown role 'superuser'"* ]]
    run --separate-stderr "$KEYS" create --name carol --roles reader --file "$T/keys"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ "$stderr" == *"keys:2:"* ]]
    run --separate-stderr "$KEYS" list --file "$T/missing"
    [ "$status" -eq 1 ]
    [[ "$stderr" == *"$T/missing"* ]]
}

@test "without --file the keys file is KCQRS_KEYS_FILE" {
    KCQRS_KEYS_FILE="$T/env-keys" run --separate-stderr "$KEYS" create --name dora --roles reader
    [ "$status" -eq 0 ]
    [[ "$output" == kq_* ]]
    grep -q '^dora reader ' "$T/env-keys"
    KCQRS_KEYS_FILE="$T/env-keys" run --separate-stderr "$KEYS" list
    [ "$status" -eq 0 ]
    [ "$output" = "dora reader" ]
}

@test "bad usage exits 2 without touching the file" {
    run --separate-stderr "$KEYS" create --name alice --file "$T/keys"
    [ "$status" -eq 2 ]
    run --separate-stderr "$KEYS" create --name "a b" --roles admin --file "$T/keys"
    [ "$status" -eq 2 ]
    run --separate-stderr "$KEYS" create --name alice --roles root --file "$T/keys"
    [ "$status" -eq 2 ]
    [[ "$stderr" == *"unknown role 'root'"* ]]
    run --separate-stderr "$KEYS" frobnicate
    [ "$status" -eq 2 ]
    [ ! -e "$T/keys" ]
}

@test "rotate prints a new key for the same name and roles; revoke removes the entry; both keep mode 0600 and the other lines" {
    "$KEYS" create --name alice --roles admin --file "$T/keys" >/dev/null
    echo "# a comment stays" >>"$T/keys"
    "$KEYS" create --name bob --roles writer,reader --file "$T/keys" >"$T/bob.key"
    run --separate-stderr "$KEYS" rotate --name bob --file "$T/keys"
    [ "$status" -eq 0 ]
    [[ "$output" =~ ^kq_[A-Za-z0-9_-]{43}$ ]]
    [ "$output" != "$(cat "$T/bob.key")" ]
    hash=$(printf '%s' "$output" | sha256sum | cut -d' ' -f1)
    [ "$(sed -n 3p "$T/keys")" = "bob writer,reader $hash" ]
    [ "$(sed -n 2p "$T/keys")" = "# a comment stays" ]
    [ "$(stat -c %a "$T/keys")" = "600" ]
    run --separate-stderr "$KEYS" revoke --name alice --file "$T/keys"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [ "$(cat "$T/keys")" = "# a comment stays
bob writer,reader $hash" ]
    [ "$(stat -c %a "$T/keys")" = "600" ]
    cp "$T/keys" "$T/before"
    run --separate-stderr "$KEYS" revoke --name alice --file "$T/keys"
    [ "$status" -eq 1 ]
    [[ "$stderr" == *"no key named 'alice'"* ]]
    run --separate-stderr "$KEYS" rotate --file "$T/keys"
    [ "$status" -eq 2 ]
    run --separate-stderr "$KEYS" revoke --name bob --roles admin --file "$T/keys"
    [ "$status" -eq 2 ]
    cmp "$T/keys" "$T/before"
    [ -z "$(ls "$T" | grep 'keys\.')" ] # no temporary file left
}
