#!/usr/bin/env bats
# kcqrs-events against flatc, the oracle (DESIGN.md sections 4 and 9).
#
# For every example in tests/data/events/*.json:
#   (a) our encode, decoded by flatc, equals the input (semantically), and our
#       own decode of our binary is byte-identical to flatc's JSON;
#   (b) flatc's binary of the input, decoded by us, equals the input and is
#       byte-identical to flatc's own JSON;
# and (c) invalid JSON and invalid binaries are rejected (exit 1, one line on
# stderr, nothing on stdout); (d) `flatc --conform` guards schema evolution.
# flatc missing is a failure, not a skip.

setup() {
    ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
    BIN="${KCQRS_BIN:-$ROOT/build/bin}"
    EV="$BIN/kcqrs-events"
    SCHEMA="$ROOT/events/events.fbs"
    DATA="$ROOT/tests/data/events"
    T="$BATS_TEST_TMPDIR"
    if ! command -v flatc >/dev/null; then
        echo "flatc (Debian package flatbuffers-compiler) is required as the test oracle" >&2
        return 1
    fi
    if [ ! -x "$EV" ]; then
        echo "$EV is missing: build it first (make build/bin/kcqrs-events)" >&2
        return 1
    fi
}

# JSON text of a file with sorted keys: equal iff semantically equal.
canon() {
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1], encoding="utf-8")), sort_keys=True))' "$1"
}

# flatc's JSON for binary $1, written as $2.
flatc_json() {
    local dir
    dir=$(mktemp -d "$T/flatc.XXXXXX")
    cp "$1" "$dir/x.kqev"
    flatc --json --strict-json --raw-binary -o "$dir" "$SCHEMA" -- "$dir/x.kqev" || return 1
    mv "$dir/x.json" "$2"
}

# flatc's binary for JSON $1 under schema $2, written as $3.
flatc_bin() {
    local dir
    dir=$(mktemp -d "$T/flatcb.XXXXXX")
    cp "$1" "$dir/x.json"
    flatc -b -o "$dir" "$2" "$dir/x.json" || return 1
    mv "$dir/x.kqev" "$3"
}

examples() {
    ls "$DATA"/*.json
}

@test "flatc is installed" {
    run flatc --version
    [ "$status" -eq 0 ]
    [[ "$output" == "flatc version"* ]]
}

@test "usage: --help exits 0, no or unknown command exits 2" {
    run "$EV" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"encode|decode"* ]]
    run "$EV"
    [ "$status" -eq 2 ]
    run "$EV" frobnicate
    [ "$status" -eq 2 ]
    run "$EV" encode extra
    [ "$status" -eq 2 ]
}

@test "the examples cover every event type, every field and every enum value of events.fbs" {
    # An independent reading of events.fbs (not our C descriptors): every
    # table/struct field and union member must appear in some example, and
    # every enum value must appear or be the default of a field of that enum.
    run python3 - "$SCHEMA" "$DATA" <<'EOF'
import json, os, re, sys
text = re.sub(r'//[^\n]*', '', open(sys.argv[1]).read())
enums = {m[0]: [v.split('=')[0].strip() for v in m[1].split(',') if v.strip()]
         for m in re.findall(r'enum\s+(\w+)\s*:\s*\w+\s*\{([^}]*)\}', text)}
unions = {m[0]: [v.strip() for v in m[1].split(',') if v.strip()]
          for m in re.findall(r'union\s+(\w+)\s*\{([^}]*)\}', text)}
tables = {}
for kind, name, body in re.findall(r'(table|struct)\s+(\w+)\s*\{([^}]*)\}', text):
    fields = []
    for f in re.findall(r'(\w+)\s*:\s*([^;]+);', body):
        typ = re.match(r'\s*(\[?[\w:]+\]?)', f[1]).group(1)
        dflt = re.search(r'=\s*([\w.-]+)', f[1])
        fields.append((f[0], typ, dflt.group(1) if dflt else None))
    tables[name] = fields
expected, seen, enum_seen, enum_default = set(), set(), set(), set()
for t, fields in tables.items():
    for fname, typ, dflt in fields:
        expected.add((t, fname))
        if typ in unions:
            expected.add((t, fname + '_type'))
        if typ in enums:
            enum_default.add((typ, dflt if dflt and dflt != 'null' else enums[typ][0]))
for u, members in unions.items():
    for m in members:
        expected.add((u, m))
def walk(t, obj):
    types = {f[0]: f[1] for f in tables[t]}
    for k, v in obj.items():
        seen.add((t, k))
        if k.endswith('_type') and k[:-5] in types and types[k[:-5]] in unions:
            seen.add((types[k[:-5]], v))
            continue
        typ = types[k]
        base = typ.strip('[]').split(':')[0]
        if base in enums:
            enum_seen.add((base, v))
        elif typ in unions:
            walk(obj[k + '_type'], v)
        elif base in tables:
            for e in (v if typ.startswith('[') else [v]):
                walk(base, e)
names = sorted(n for n in os.listdir(sys.argv[2]) if n.endswith('.json'))
for n in names:
    walk('Envelope', json.load(open(os.path.join(sys.argv[2], n), encoding='utf-8')))
missing = sorted(expected - seen)
enum_missing = sorted((e, v) for e in enums for v in enums[e]
                      if (e, v) not in enum_seen and (e, v) not in enum_default)
print('examples:', len(names), 'fields/members expected:', len(expected))
if missing or enum_missing or len(unions['Event']) != 14:
    print('not covered:', missing, enum_missing)
    sys.exit(1)
EOF
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "(a) our encode of every example, decoded by flatc, equals the example; our decode is byte-identical to flatc" {
    local n=0 fail=""
    for f in $(examples); do
        b=$(basename "$f" .json)
        "$EV" encode <"$f" >"$T/$b.kqev" || { fail+=" $b(encode)"; continue; }
        flatc_json "$T/$b.kqev" "$T/$b.flatc.json" || { fail+=" $b(flatc-decode)"; continue; }
        [ "$(canon "$f")" = "$(canon "$T/$b.flatc.json")" ] || fail+=" $b(semantic)"
        "$EV" decode <"$T/$b.kqev" >"$T/$b.ours.json" || { fail+=" $b(decode)"; continue; }
        cmp "$T/$b.flatc.json" "$T/$b.ours.json" || {
            diff "$T/$b.flatc.json" "$T/$b.ours.json" | head -20
            fail+=" $b(bytes)"
        }
        n=$((n + 1))
    done
    echo "checked $n examples; failed:$fail"
    [ -z "$fail" ]
    [ "$n" -ge 14 ]
}

@test "(b) flatc's binary of every example, decoded by us, equals the example and is byte-identical to flatc" {
    local n=0 fail=""
    for f in $(examples); do
        b=$(basename "$f" .json)
        flatc_bin "$f" "$SCHEMA" "$T/$b.kqev" || { fail+=" $b(flatc-encode)"; continue; }
        flatc_json "$T/$b.kqev" "$T/$b.flatc.json" || { fail+=" $b(flatc-decode)"; continue; }
        "$EV" decode <"$T/$b.kqev" >"$T/$b.ours.json" || { fail+=" $b(decode)"; continue; }
        [ "$(canon "$f")" = "$(canon "$T/$b.ours.json")" ] || fail+=" $b(semantic)"
        cmp "$T/$b.flatc.json" "$T/$b.ours.json" || {
            diff "$T/$b.flatc.json" "$T/$b.ours.json" | head -20
            fail+=" $b(bytes)"
        }
        n=$((n + 1))
    done
    echo "checked $n examples; failed:$fail"
    [ -z "$fail" ]
    [ "$n" -ge 14 ]
}

@test "encode of our own decode output reproduces the binary byte for byte" {
    local fail=""
    for f in $(examples); do
        b=$(basename "$f" .json)
        "$EV" encode <"$f" >"$T/$b.1.kqev"
        "$EV" decode <"$T/$b.1.kqev" >"$T/$b.json"
        "$EV" encode <"$T/$b.json" >"$T/$b.2.kqev"
        cmp "$T/$b.1.kqev" "$T/$b.2.kqev" || fail+=" $b"
    done
    echo "failed:$fail"
    [ -z "$fail" ]
}

@test "explicit default values are kept by our encoder and printed as flatc prints them" {
    cat >"$T/d.json" <<'EOF'
{"event_id": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "aggregate_type": "unknown",
 "aggregate_id": "wf-d", "version": 0, "occurred_at_us": 0, "schema_version": 1,
 "payload_type": "WorkflowCreated",
 "payload": {"name": "n", "enabled": true, "webhook_secret": "s",
   "steps": [{"action_type": "HttpAction", "action": {"method": "POST", "url": "http://x"}}]}}
EOF
    "$EV" encode <"$T/d.json" >"$T/d.kqev"
    flatc_json "$T/d.kqev" "$T/d.flatc.json"
    [ "$(canon "$T/d.json")" = "$(canon "$T/d.flatc.json")" ]
    "$EV" decode <"$T/d.kqev" >"$T/d.ours.json"
    cmp "$T/d.flatc.json" "$T/d.ours.json"
    grep -q '"schema_version": 1' "$T/d.ours.json"
    grep -q '"method": "POST"' "$T/d.ours.json"
    # flatc -b drops them; we then print what flatc prints: no defaults.
    flatc_bin "$T/d.json" "$SCHEMA" "$T/d2.kqev"
    flatc_json "$T/d2.kqev" "$T/d2.flatc.json"
    "$EV" decode <"$T/d2.kqev" >"$T/d2.ours.json"
    cmp "$T/d2.flatc.json" "$T/d2.ours.json"
    if grep -q '"schema_version"' "$T/d2.ours.json"; then return 1; fi
}

@test "enum values and union types given as numbers are accepted, printed as names" {
    cat >"$T/n.json" <<'EOF'
{"event_id": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "aggregate_type": 1,
 "aggregate_id": "r", "payload_type": 1, "payload": {"name": "n", "status": 2}}
EOF
    "$EV" encode <"$T/n.json" >"$T/n.kqev"
    flatc_json "$T/n.kqev" "$T/n.flatc.json"
    "$EV" decode <"$T/n.kqev" >"$T/n.ours.json"
    cmp "$T/n.flatc.json" "$T/n.ours.json"
    grep -q '"aggregate_type": "resource"' "$T/n.ours.json"
    grep -q '"payload_type": "ResourceCreated"' "$T/n.ours.json"
    grep -q '"status": "archived"' "$T/n.ours.json"
}

@test "(c) every invalid JSON input: exit 1, one line on stderr, nothing on stdout" {
    local n=0 fail=""
    for f in "$DATA"/invalid/*.json; do
        b=$(basename "$f" .json)
        rc=0
        "$EV" encode <"$f" >"$T/out" 2>"$T/err" || rc=$?
        lines=$(wc -l <"$T/err")
        if [ "$rc" -ne 1 ] || [ -s "$T/out" ] || [ "$lines" -ne 1 ]; then
            fail+=" $b(rc=$rc,out=$(wc -c <"$T/out"),errlines=$lines)"
        fi
        n=$((n + 1))
    done
    echo "checked $n invalid inputs; failed:$fail"
    [ -z "$fail" ]
    [ "$n" -ge 30 ]
}

@test "(c) the error message names the JSON path at fault" {
    run "$EV" encode <"$DATA/invalid/wrong_type_string.json"
    [ "$status" -eq 1 ]
    [[ "$output" == *"payload.name: expected string"* ]]
    run "$EV" encode <"$DATA/invalid/missing_required_header_value.json"
    [[ "$output" == *"payload.steps[0].action.headers[0].value: required field missing"* ]]
    run "$EV" encode <"$DATA/invalid/unknown_enum_name.json"
    [[ "$output" == *"payload.status"*"deleted"* ]]
}

@test "(c) JSON input over the 1 MiB limit is rejected" {
    python3 -c '
import json
print(json.dumps({"event_id": [0]*16, "aggregate_id": "r", "payload_type": "ResourceCreated",
                  "payload": {"name": "n", "description": "x" * (1 << 20)}}))' >"$T/big.json"
    run "$EV" encode <"$T/big.json"
    [ "$status" -eq 1 ]
    [[ "$output" == *"limit"* ]]
}

@test "(c) garbage, truncated and corrupted binaries: decode exits 1, message, no output" {
    local fail=""
    "$EV" encode <"$DATA/workflow_created.json" >"$T/good.kqev"
    "$EV" decode <"$T/good.kqev" >"$T/good.json"
    size=$(stat -c %s "$T/good.kqev")
    # Every proper prefix fails, except that cutting the trailing alignment
    # padding (at most 3 bytes, referenced by nothing) leaves the same event.
    for ((i = 0; i < size; i++)); do
        head -c "$i" "$T/good.kqev" >"$T/trunc.kqev"
        rc=0
        "$EV" decode <"$T/trunc.kqev" >"$T/out" 2>"$T/err" || rc=$?
        if [ "$rc" -eq 0 ] && [ "$i" -ge $((size - 3)) ] && cmp -s "$T/out" "$T/good.json"; then
            continue
        fi
        if [ "$rc" -ne 1 ] || [ -s "$T/out" ] || [ ! -s "$T/err" ]; then fail+=" prefix$i(rc=$rc)"; fi
    done
    # random garbage of several sizes (fixed seed), a JSON text, a wrong file identifier
    python3 -c '
import random, sys
r = random.Random(42)
for i, n in enumerate([1, 7, 8, 64, 300, 4096]):
    open(sys.argv[1] + "/garbage%d.bin" % i, "wb").write(bytes(r.randrange(256) for _ in range(n)))
data = bytearray(open(sys.argv[1] + "/good.kqev", "rb").read())
data[4:8] = b"KQEX"
open(sys.argv[1] + "/garbage_ident.bin", "wb").write(data)
' "$T"
    cp "$DATA/resource_created.json" "$T/garbage_json.bin"
    for g in "$T"/garbage*.bin; do
        rc=0
        "$EV" decode <"$g" >"$T/out" 2>"$T/err" || rc=$?
        if [ "$rc" -ne 1 ] || [ -s "$T/out" ] || [ ! -s "$T/err" ]; then fail+=" $(basename "$g")(rc=$rc)"; fi
    done
    run "$EV" decode <"$T/garbage_ident.bin"
    [[ "$output" == *"file identifier"* ]]
    echo "failed:$fail"
    [ -z "$fail" ]
}

@test "an event_id that is not 16 bytes: flatc writes it, our decode rejects it naming event_id" {
    # [ubyte] cannot carry a length in the schema, so flatc accepts any; the
    # 16-byte rule lives in our verifier, which every reader goes through.
    for n in 0 15 17 32; do
        python3 -c '
import json, sys
e = json.load(open(sys.argv[1])); e["event_id"] = list(range(int(sys.argv[2])))
json.dump(e, open(sys.argv[3], "w"))' "$DATA/resource_created.json" "$n" "$T/id$n.json"
        flatc_bin "$T/id$n.json" "$SCHEMA" "$T/id$n.kqev"
        run "$EV" decode <"$T/id$n.kqev"
        echo "$n: $status $output"
        [ "$status" -eq 1 ]
        [[ "$output" == *"event_id: must be exactly 16 bytes, got $n"* ]]
        run "$EV" encode <"$T/id$n.json"
        [ "$status" -eq 1 ]
        [[ "$output" == *"event_id: expected exactly 16 elements, got $n"* ]]
    done
}

@test "a field added by a newer schema is ignored; output equals flatc's with our schema" {
    sed 's/^  payload: Event (required);/  payload: Event (required);\n  region: string;/' "$SCHEMA" >"$T/newer.fbs"
    if cmp -s "$SCHEMA" "$T/newer.fbs"; then echo "sed did not change the schema"; return 1; fi
    python3 -c '
import json, sys
e = json.load(open(sys.argv[1])); e["region"] = "eu-west"
json.dump(e, open(sys.argv[2], "w"))' "$DATA/resource_created.json" "$T/newer.json"
    flatc_bin "$T/newer.json" "$T/newer.fbs" "$T/newer.kqev"
    flatc_json "$T/newer.kqev" "$T/newer.flatc.json"
    run "$EV" decode <"$T/newer.kqev"
    [ "$status" -eq 0 ]
    [ "$output" = "$(cat "$T/newer.flatc.json")" ]
    [[ "$output" != *"region"* ]]
}

@test "an enum value or event type added by a newer schema is rejected on decode" {
    sed 's/archived = 2 }/archived = 2, deleted = 3 }/' "$SCHEMA" >"$T/enum.fbs"
    if cmp -s "$SCHEMA" "$T/enum.fbs"; then echo "sed did not change the schema"; return 1; fi
    sed 's/"status": "inactive"/"status": "deleted"/' "$DATA/resource_created.json" >"$T/enum.json"
    flatc_bin "$T/enum.json" "$T/enum.fbs" "$T/enum.kqev"
    run "$EV" decode <"$T/enum.kqev"
    [ "$status" -eq 1 ]
    [[ "$output" == *"payload.status: unknown enum value"* ]]

    sed -e 's/RunSucceeded, RunFailed$/RunSucceeded, RunFailed, RunCancelled/' \
        -e 's/^table RunSucceeded {}/table RunSucceeded {}\ntable RunCancelled {}/' "$SCHEMA" >"$T/union.fbs"
    grep -q 'RunFailed, RunCancelled' "$T/union.fbs"
    sed 's/"RunSucceeded"/"RunCancelled"/' "$DATA/run_succeeded.json" >"$T/union.json"
    flatc_bin "$T/union.json" "$T/union.fbs" "$T/union.kqev"
    run "$EV" decode <"$T/union.kqev"
    [ "$status" -eq 1 ]
    [[ "$output" == *"payload_type: unknown union type"* ]]
}

@test "(d) events.fbs conforms to every released schema (flatc --conform)" {
    local n=0
    for old in "$ROOT"/events/schema-history/*.fbs; do
        run flatc --conform "$old" "$SCHEMA"
        echo "$old: status $status $output"
        [ "$status" -eq 0 ]
        [ -z "$output" ]
        n=$((n + 1))
    done
    [ "$n" -ge 1 ]
}

@test "(d) the conform check catches incompatible changes (retyped field, renumbered enum, inserted field)" {
    old="$ROOT/events/schema-history/events.v1.fbs"
    sed 's/^  version: long; /  version: int;  /' "$old" >"$T/retyped.fbs"
    sed 's/active = 0, inactive = 1, archived = 2/active = 0, archived = 1, inactive = 2/' "$old" >"$T/enum.fbs"
    sed 's/^table Envelope {/table Envelope {\n  tenant: string;/' "$old" >"$T/inserted.fbs"
    for s in retyped enum inserted; do
        if cmp -s "$old" "$T/$s.fbs"; then echo "$s: sed did not change the schema"; return 1; fi
        flatc -b -o "$T" "$T/$s.fbs" "$DATA/run_succeeded.json" # and the schema still parses
        run flatc --conform "$old" "$T/$s.fbs"
        echo "$s: status $status $output"
        [ "$status" -ne 0 ]
        [[ "$output" == *"conform"* ]]
    done
}

# frame FILE...: each file's bytes preceded by its length (4 bytes, little-endian).
frame() {
    python3 -c '
import struct, sys
for f in sys.argv[1:]:
    b = open(f, "rb").read()
    sys.stdout.buffer.write(struct.pack("<I", len(b)) + b)' "$@"
}

@test "decode: a stream of length-prefixed records gives one JSON line per record" {
    local n=0 f bins=() srcs=()
    for f in "$DATA"/*.json; do
        "$EV" encode <"$f" >"$T/$n.kqev" # byte-identical to flatc's (tested above)
        bins+=("$T/$n.kqev")
        srcs+=("$f")
        n=$((n + 1))
    done
    [ "$n" -ge 20 ]
    frame "${bins[@]}" >"$T/stream.bin"
    run "$EV" decode <"$T/stream.bin"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq "$n" ]
    printf '%s\n' "${lines[@]}" >"$T/got.jsonl"
    python3 - "$T/got.jsonl" "${srcs[@]}" <<'PY'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
want = [json.load(open(f, encoding="utf-8")) for f in sys.argv[2:]]
assert got == want, [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
PY
    # one framed record is a stream too; a bare record is still decoded as one
    frame "${bins[0]}" >"$T/one.bin"
    run "$EV" decode <"$T/one.bin"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 1 ]
    run "$EV" decode <"${bins[0]}"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -gt 1 ]
}

@test "decode: a stream cut inside a record or with a bad length exits 1 naming the record" {
    "$EV" encode <"$DATA/resource_created.json" >"$T/a.kqev"
    "$EV" encode <"$DATA/resource_updated.json" >"$T/b.kqev"
    frame "$T/a.kqev" >"$T/a.frame"
    frame "$T/a.kqev" "$T/b.kqev" >"$T/two.bin"
    run "$EV" decode <"$T/two.bin"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    # cut 3 bytes before the end: the first record is printed, the second refused
    head -c $(($(stat -c %s "$T/two.bin") - 3)) "$T/two.bin" >"$T/cut.bin"
    run "$EV" decode <"$T/cut.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 2 (byte $(stat -c %s "$T/a.frame")"*"ends inside a record"* ]]
    # cut inside the second length prefix
    { cat "$T/a.frame"; printf '\x10\x00'; } >"$T/cutlen.bin"
    run "$EV" decode <"$T/cutlen.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 2"*"inside a length prefix"* ]]
    # a length of 0xFFFFFFFF, and of 0, after the first record
    { cat "$T/a.frame"; printf '\xff\xff\xff\xff\x00\x00\x00\x00'; } >"$T/big.bin"
    run "$EV" decode <"$T/big.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 2"*"not in 1.."* ]]
    { cat "$T/a.frame"; printf '\x00\x00\x00\x00'; } >"$T/zero.bin"
    run "$EV" decode <"$T/zero.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 2"*"not in 1.."* ]]
    # a framed record whose bytes are not an Envelope
    { cat "$T/a.frame"; printf '\x0c\x00\x00\x00\x08\x00\x00\x00XXXXYYYY'; } >"$T/bad.bin"
    run "$EV" decode <"$T/bad.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 2"* ]]
}
