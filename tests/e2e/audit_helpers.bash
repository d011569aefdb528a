# tests/e2e/audit_helpers.bash — helpers of audit.bats (kcqrs-audit).
#
# Load after helpers and commands_helpers.
#
# audit ARGS...: run build/bin/kcqrs-audit with the PostgreSQL DSN and the
#   LMDB directory pointing at nothing (it must read Kafka only); stdout to
#   $BATS_TEST_TMPDIR/audit.out, stderr to audit.err; sets AUD_RC. Echoes both
#   so that a failing test shows them; fails on a sanitizer report.
# use_prefix NAME: this test's own topics (KCQRS_TOPIC_PREFIX=<file prefix>.NAME),
#   so one test's tampering never shows in another's log.
# now_us: microseconds since the epoch.
# last_offset ID VERSION: offset of the record of ID with that version whose
#   actor is not kq_produce_raw (the writer's), from kq_offsets dump.
# forged_offset ID VERSION: the same for the record kq_produce_raw wrote.
# prev_hash_of ID VERSION: prev_hash (hex) of the writer's record.
# head_of TOPIC PARTITION: the head hash verify-chain printed for it (audit.out).
# flip_in_segment TOPIC PARTITION NEEDLE: with the broker stopped, change the
#   first byte of NEEDLE (which must occur exactly once) in the partition's
#   segment files (ASCII case flip).

audit() {
    KCQRS_PG_DSN="postgresql://nobody@127.0.0.1:1/gone" KCQRS_LMDB_DIR="$BATS_TEST_TMPDIR/no-lmdb" \
        "$KCQRS_BIN/kcqrs-audit" "$@" >"$BATS_TEST_TMPDIR/audit.out" 2>"$BATS_TEST_TMPDIR/audit.err" &&
        AUD_RC=0 || AUD_RC=$?
    echo "\$ kcqrs-audit $* -> exit $AUD_RC"
    sed 's/^/  out: /' "$BATS_TEST_TMPDIR/audit.out" | head -n 60
    sed 's/^/  err: /' "$BATS_TEST_TMPDIR/audit.err" | head -n 20
    [[ ! -e "$BATS_TEST_TMPDIR/no-lmdb" ]] || kq_fail "kcqrs-audit created an LMDB directory"
    ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$BATS_TEST_TMPDIR/audit.err" ||
        kq_fail "kcqrs-audit: sanitizer report (see err above)"
}

use_prefix() {
    export KCQRS_TOPIC_PREFIX="${KCQRS_TOPIC_PREFIX%%.t-*}.t-$1"
}

now_us() { date +%s%6N; }

_dump_field() {
    # _dump_field ID VERSION MODE(writer|forged) FIELD(offset|prev)
    dump_topic | python3 -c '
import json, sys
idv, ver, mode, field = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
key = "%s/%020d" % (idv, ver)
for line in sys.stdin:
    part, off, k, et, js = line.rstrip("\n").split(" ", 4)
    if k != key:
        continue
    d = json.loads(js)
    forged = d.get("actor") == "kq_produce_raw"
    if forged != (mode == "forged"):
        continue
    if field == "offset":
        print(off)
    else:
        print(bytes(d.get("prev_hash", [])).hex())
    sys.exit(0)
sys.exit("no record " + key)' "$1" "$2" "$3" "$4"
}
last_offset() { _dump_field "$1" "$2" writer offset; }
forged_offset() { _dump_field "$1" "$2" forged offset; }
prev_hash_of() { _dump_field "$1" "$2" writer prev; }

head_of() {
    awk -v tp="$1:$2=" 'index($1, tp) == 1 { print substr($1, length(tp) + 1) }' \
        "$BATS_TEST_TMPDIR/audit.out"
}

flip_in_segment() {
    python3 - "$(kq_broker_data)/$1-$2" "$3" <<'PY'
import glob, sys
d, needle = sys.argv[1], sys.argv[2].encode()
hits = []
for f in sorted(glob.glob(d + "/*.log")):
    data = open(f, "rb").read()
    i = data.find(needle)
    while i >= 0:
        hits.append((f, i))
        i = data.find(needle, i + 1)
if len(hits) != 1:
    sys.exit("expected the needle once in %s, found %d" % (d, len(hits)))
f, i = hits[0]
with open(f, "r+b") as fh:
    fh.seek(i)
    b = fh.read(1)
    fh.seek(i)
    fh.write(bytes([b[0] ^ 0x20]))
print("flipped byte %d of %s" % (i, f))
PY
}
