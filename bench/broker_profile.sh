#!/usr/bin/env bash
# bench/broker_profile.sh PID [SECONDS] — where a running Kafka broker's CPU goes
# (issue #15 item 2), by hand while a load runs (e.g. during BENCH_ONLY=stack):
#   1. CPU ticks per JVM thread group over SECONDS (default 15), from
#      /proc/PID/task/*/stat, named through `jcmd PID Thread.print`
#      (request handlers, network threads, transaction marker sender, GC, JIT);
#   2. a JFR recording of the same length (`jcmd PID JFR.start`), its
#      execution samples attributed to the Kafka request type being handled
#      (KafkaApis.handle<Type>), to delayed fetches completing, or to the
#      network threads.
# Needs the JDK's jcmd and jfr (Kafka's own JDK). Prints two tables.
set -euo pipefail
pid=${1:?usage: bench/broker_profile.sh BROKER_PID [SECONDS]}
secs=${2:-15}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kcqrs-broker-profile.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
command -v jcmd >/dev/null && command -v jfr >/dev/null || { echo "broker_profile: needs jcmd and jfr (a JDK)" >&2; exit 1; }

jcmd "$pid" Thread.print 2>/dev/null | sed -n 's/^"\([^"]*\)".* nid=\(0x[0-9a-f]*\).*/\2 \1/p' |
    while read -r nid name; do echo "$((nid)) $name"; done | sort -k1,1 >"$tmp/names"
snap() {
    local t
    for t in /proc/"$pid"/task/*; do
        echo "${t##*/} $(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
    done | sort -k1,1
}
snap >"$tmp/s0"
jcmd "$pid" JFR.start name=kcqrs-profile settings=profile duration="${secs}s" filename="$tmp/rec.jfr" >/dev/null
sleep "$secs"
snap >"$tmp/s1"
sleep 2 # the recording is written when it ends
echo "CPU ticks per thread group over ${secs}s:"
join "$tmp/s0" "$tmp/s1" | awk '{ print $1, $3 - $2 }' | join -a1 - "$tmp/names" |
    awk '{ d = $2; $1 = ""; $2 = ""; n = $0; gsub(/-?[0-9]+$/, "", n); gsub(/#[0-9]+/, "#", n)
           a[n] += d; tot += d }
         END { for (k in a) if (a[k] > 0) printf "%8d %s\n", a[k], k; printf "%8d TOTAL\n", tot }' |
    sort -rn | head -25
echo
echo "JFR execution samples by what the thread was doing:"
jfr print --stack-depth 64 --events jdk.ExecutionSample "$tmp/rec.jfr" >"$tmp/samples.txt"
python3 - "$tmp/samples.txt" <<'PY'
import collections, re, sys
c = collections.Counter()
for e in open(sys.argv[1]).read().split("jdk.ExecutionSample")[1:]:
    frames = re.findall(r"^\s+([\w.$<>]+)\(", e, re.M)
    api = [f for f in frames if re.search(r"KafkaApis\.handle\w+", f)]
    if api:
        key = re.search(r"handle\w+", api[-1]).group(0)
    elif any("DelayedFetch" in f for f in frames):
        key = "DelayedFetch (a waiting fetch completed)"
    elif any("network.Processor" in f for f in frames):
        key = "network threads"
    else:
        m = re.search(r'sampledThread = "([^"]*)"', e)
        key = "other: " + re.sub(r"\d+", "", m.group(1) if m else "?")
    c[key] += 1
total = sum(c.values())
for k, v in c.most_common(25):
    print(f"{v:8d} {100 * v / max(total, 1):5.1f}% {k}")
print(f"{total:8d} samples")
PY
