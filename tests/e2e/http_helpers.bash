# tests/e2e/http_helpers.bash — exact bytes to a service's HTTP port and checks
# of exactly what came back (http_edge.bats, http_flood.bats).
#
# Load after helpers and commands_helpers:
#     load helpers
#     load commands_helpers
#     load http_helpers
#
# Sending. raw PORT REQUEST [KQ_RAWHTTP_OPTIONS...] sends REQUEST (escapes \r
# \n \t \\ \0 \xHH decoded by tests/tools/kq_rawhttp; no newline is added) to
# 127.0.0.1:PORT and sets
#   RAW_OUT       the file holding every byte the server sent back,
#   RAW_CLOSE     eof | reset | open (the server closed with FIN, with RST or a
#                 failed send, or had not closed when the tool stopped waiting),
#   RAW_FIRST_MS  milliseconds from connect to the first byte back (-1: none),
#   RAW_CLOSE_MS, RAW_SENT, RAW_RECV, RAW_HELD_OPEN (see kq_rawhttp.c).
# With "--file F" in the options the bytes come from file F instead (REQUEST is
# then ignored, pass ""). Each exchange is echoed for a failing test's output.
#
# Checks. raw_check STATUSES closed|open|any: the bytes back are exactly the
# answers whose statuses are listed (comma-separated, in order; "" = none),
# each well-formed (one status line, Content-Length equal to its body), every
# answer >= 400 a problem+json error (README "Errors") with Content-Type
# application/problem+json (RAW_ERROR_SHAPE is the one place that knows that shape),
# and the connection closed (with "Connection: close" on the last answer) or
# still open. raw_hdr NAME prints a header of the first answer.

RAW_N=0
raw() {
    local port="$1" request="$2" d="$BATS_TEST_TMPDIR" in info
    shift 2
    RAW_N=$((RAW_N + 1))
    in="$d/raw$RAW_N.in"
    RAW_OUT="$d/raw$RAW_N.out"
    info="$d/raw$RAW_N.info"
    local args=()
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == --file ]]; then
            in="$2"
            shift 2
        else
            args+=("$1")
            shift
        fi
    done
    [[ "$in" == "$d/raw$RAW_N.in" ]] && printf '%s' "$request" >"$in"
    kq_tool kq_rawhttp -o "$RAW_OUT" "${args[@]}" "127.0.0.1:$port" "$in" 2>"$info" ||
        kq_fail "kq_rawhttp failed: $(cat "$info")" || return 1
    local line kv
    line=$(tail -n 1 "$info")
    for kv in $line; do
        case "$kv" in
        sent=*) RAW_SENT=${kv#*=} ;;
        recv=*) RAW_RECV=${kv#*=} ;;
        first_byte_ms=*) RAW_FIRST_MS=${kv#*=} ;;
        close=*) RAW_CLOSE=${kv#*=} ;;
        close_ms=*) RAW_CLOSE_MS=${kv#*=} ;;
        held_open=*) RAW_HELD_OPEN=${kv#*=} ;;
        esac
    done
    echo "> raw :$port $(head -c 200 "$in" | cat -v | tr '\n' ' ')${args[*]:+ [${args[*]}]}"
    echo "< $line"
    echo "< $(head -c 700 "$RAW_OUT" | cat -v | tr '\n' ' ')"
}

# The error body every error answer has (README "Errors": RFC 9457 problem
# details): a python predicate over the parsed JSON d and the answer's status.
# The one place to change when the error format changes. "instance" is absent
# when the server answered before it had read a request line.
RAW_ERROR_SHAPE='isinstance(d, dict) and isinstance(d.get("code"), str) and d["code"] != "" and d.get("type") == "urn:kcqrs:problem:" + d["code"] and isinstance(d.get("title"), str) and d["title"] != "" and d.get("status") == status and isinstance(d.get("detail"), str) and d["detail"] != "" and isinstance(d.get("errors"), list) and isinstance(d.get("instance", "/"), str) and d.get("instance", "/").startswith("/")'
RAW_ERROR_TYPE='application/problem+json'

raw_check() {
    python3 - "$RAW_OUT" "$1" "$2" "$RAW_CLOSE" "$RAW_ERROR_SHAPE" "$RAW_ERROR_TYPE" <<'PY'
import json, re, sys
path, want, close_want, closed, shape, ctype_want = sys.argv[1:7]
data = open(path, "rb").read()
want = [int(s) for s in want.split(",") if s]
def fail(why):
    sys.exit("raw_check: %s\n  expected statuses %s, connection %s (it was %s)\n  received %d bytes: %r"
             % (why, want, close_want, closed, len(data), data[:1500]))
lines = re.findall(rb"HTTP/1\.[01] \d{3} ", data)
answers, i = [], 0
while i < len(data):
    j = data.find(b"\r\n\r\n", i)
    if j < 0:
        fail("bytes after the last complete answer")
    head = data[i:j].decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) [^\r\n]*", head[0])
    if not m:
        fail("not a status line: %r" % head[0])
    hdrs = []
    for h in head[1:]:
        if ":" not in h:
            fail("not a header line: %r" % h)
        k, v = h.split(":", 1)
        hdrs.append((k.strip().lower(), v.strip()))
    cls = [v for k, v in hdrs if k == "content-length"]
    if len(cls) != 1 or not cls[0].isdigit():
        fail("answer %d: not exactly one valid Content-Length: %r" % (len(answers) + 1, cls))
    n = int(cls[0])
    body = data[j + 4:j + 4 + n]
    if len(body) != n:
        fail("answer %d: body shorter than its Content-Length" % (len(answers) + 1))
    answers.append((int(m.group(1)), dict(hdrs), body))
    i = j + 4 + n
if len(lines) != len(answers):
    fail("%d status lines for %d answers" % (len(lines), len(answers)))
got = [a[0] for a in answers]
if got != want:
    fail("statuses %s" % got)
for status, hdrs, body in answers:
    if status < 400:
        continue
    ctype = hdrs.get("content-type", "")
    if ctype.split(";")[0].strip() != ctype_want:
        fail("error %d with Content-Type %r" % (status, ctype))
    try:
        d = json.loads(body)
    except ValueError:
        fail("error %d with a body that is not JSON" % status)
    try:
        ok = eval(shape)
    except Exception:
        ok = False
    if not ok:
        fail("error %d without the error shape: %r" % (status, body))
if close_want == "closed":
    if closed == "open":
        fail("the connection stayed open")
    if answers and "close" not in answers[-1][1].get("connection", "").lower():
        fail("the server closed without Connection: close on its last answer")
elif close_want == "open" and closed != "open":
    fail("the connection was closed")
PY
}

raw_hdr() {
    python3 - "$RAW_OUT" "$1" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
for h in head[1:]:
    k, _, v = h.partition(":")
    if k.strip().lower() == sys.argv[2].lower():
        print(v.strip())
        break
PY
}
