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

@test "--help of every binary prints usage and every configuration variable" {
    for b in "$BIN"/kcqrs-*; do
        run "$b" --help
        [ "$status" -eq 0 ]
        [[ "$output" == *"KCQRS_BROKERS"* ]]
        [[ "$output" == *"KCQRS_LOG_FORMAT"* ]]
        [[ "$output" == *"sage"* ]]
    done
}

@test "a bad configuration value stops a binary with the variable's name" {
    run env KCQRS_PARTITIONS=zero "$BIN/kcqrs-events" encode </dev/null
    [ "$status" -ne 0 ]
    [[ "$output" == *"KCQRS_PARTITIONS"* ]]
}
