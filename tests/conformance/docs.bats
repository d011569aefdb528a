#!/usr/bin/env bats
# Documents stay true: the configuration table in README.md is the one the
# binaries print (generated from lib/kq_config.c by `make docs`).

setup() {
    ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
    BIN="${KCQRS_BIN:-$ROOT/build/bin}"
}

@test "README configuration table equals the binaries' own table" {
    expected=$("$BIN/kcqrs-events" --config-markdown)
    actual=$(sed -n '/<!-- config:begin -->/,/<!-- config:end -->/p' "$ROOT/README.md" | sed '1d;$d')
    if [ "$expected" != "$actual" ]; then
        diff <(echo "$expected") <(echo "$actual") || true
        echo "README.md is stale: run 'make docs'" >&2
        return 1
    fi
}

@test "--help of every binary prints usage and the settings it reads, and only those" {
    for b in "$BIN"/kcqrs-*; do
        run "$b" --help
        [ "$status" -eq 0 ]
        [[ "$output" == *"KCQRS_LOG_FORMAT"* ]]
        [[ "$output" == *"sage"* ]]
        n=$(grep -c '^  KCQRS_' <<<"$output")
        [ "$n" -lt 80 ] # not the whole table
    done
    for b in commands query projector worker replay audit events; do
        run "$BIN/kcqrs-$b" --help
        [[ "$output" == *"KCQRS_BROKERS"* ]]
    done
    run "$BIN/kcqrs-keys" --help
    [[ "$output" == *"KCQRS_KEYS_FILE"* ]]
    [[ "$output" != *"KCQRS_BROKERS"* ]]
    [[ "$output" != *"KCQRS_HTTP_"* ]]
    run "$BIN/kcqrs-events" --help
    [[ "$output" != *"KCQRS_HTTP_"* ]]
    [[ "$output" != *"KCQRS_PG_DSN"* ]]
    run "$BIN/kcqrs-worker" --help
    [[ "$output" == *"KCQRS_WORKER_SMTP_URL"* ]]
    [[ "$output" == *"KCQRS_HTTP_TLS_CA"* ]]
    [[ "$output" != *"KCQRS_PG_DSN"* ]]
    run "$BIN/kcqrs-commands" --help
    [[ "$output" == *"KCQRS_IDEMPOTENCY_TTL"* ]]
    [[ "$output" == *"KCQRS_HTTP_THREADS"* ]]
    [[ "$output" != *"KCQRS_WORKER_"* ]]
    [[ "$output" != *"KCQRS_PG_DSN"* ]]
    run "$BIN/kcqrs-query" --help
    [[ "$output" == *"KCQRS_PG_DSN"* ]]
    [[ "$output" == *"KCQRS_QUERY_WAIT_MS"* ]]
    [[ "$output" != *"KCQRS_BATCH_LINGER_US"* ]]
}

@test "--version of every binary: the VERSION file and the git commit of the build" {
    want=$(tr -d ' \n' <"$ROOT/VERSION")
    [[ "$want" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]
    for b in "$BIN"/kcqrs-*; do
        run "$b" --version
        [ "$status" -eq 0 ]
        [[ "$output" =~ ^$(basename "$b")\ ${want//./\\.}\ \(commit\ ([0-9a-f]{7,40}(-dirty)?|unknown)\)$ ]]
    done
    # the commit is HEAD's when the build ran in this checkout
    if head=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); then
        run "$BIN/kcqrs-events" --version
        [[ "$output" == *"(commit $head"* ]]
    fi
}

@test "a bad configuration value stops a binary with the variable's name" {
    run env KCQRS_PARTITIONS=zero "$BIN/kcqrs-events" encode </dev/null
    [ "$status" -ne 0 ]
    [[ "$output" == *"KCQRS_PARTITIONS"* ]]
}
