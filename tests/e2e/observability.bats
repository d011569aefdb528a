#!/usr/bin/env bats
# observability.bats — what operators load into their own tools: the alert
# rules (ops/prometheus/) pass `promtool check rules` and their unit tests
# (`promtool test rules`: each alert fires on the series that should raise it
# and stays quiet otherwise); every query of every Grafana dashboard
# (ops/grafana/) is valid PromQL (checked by promtool as a recording rule) and
# names only metrics the services export. No service is started: the services'
# own /metrics are checked with promtool in their suites (kq_check_metrics).

load helpers

# Every metric name the sources print (histograms with their suffixes), into $1.
exported_names() {
    grep -rhoE '(kcqrs|process)_[a-z_]+' "$KQ_REPO"/{lib,commands,projections,query-api,worker}/*.c |
        sort -u >"$1"
}

@test "alert rules: promtool check rules; they name only exported metrics" {
    local names="$BATS_TEST_TMPDIR/names" m
    run promtool check rules "$KQ_REPO/ops/prometheus/kcqrs-alerts.yml"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"SUCCESS: 10 rules found"* ]]
    exported_names "$names"
    for m in $(grep -v '^ *#' "$KQ_REPO/ops/prometheus/kcqrs-alerts.yml" |
        grep -oE '\b(kcqrs|process)_[a-z_]+' | sort -u); do
        grep -qx "$m" "$names" || kq_fail "alert rules name $m, which no service exports"
    done
}

@test "alert rules: promtool test rules (every alert fires when it should, and only then)" {
    run promtool test rules "$KQ_REPO/ops/prometheus/kcqrs-alerts.test.yml"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *SUCCESS* ]]
    # every alert of the rules file is exercised by the tests
    for a in $(awk '$1 == "-" && $2 == "alert:" { print $3 }' "$KQ_REPO/ops/prometheus/kcqrs-alerts.yml"); do
        grep -q "alertname: $a\$" "$KQ_REPO/ops/prometheus/kcqrs-alerts.test.yml" ||
            kq_fail "alert $a has no test"
    done
}

@test "dashboards: valid JSON, every query valid PromQL naming only exported metrics" {
    local rules="$BATS_TEST_TMPDIR/dash-rules.yml" names="$BATS_TEST_TMPDIR/names"
    exported_names "$names"
    run python3 - "$KQ_REPO/ops/grafana" "$rules" "$names" <<'PY'
import glob, json, re, sys
src, rules, names = sys.argv[1], sys.argv[2], set(open(sys.argv[3]).read().split())
files = sorted(glob.glob(src + "/*.json"))
assert len(files) == 4, files
out, bad, n = ["groups:"], [], 0
for f in files:
    d = json.load(open(f))
    assert d["uid"] and d["title"] and d["panels"], f
    uids = [p["id"] for p in d["panels"]]
    assert len(uids) == len(set(uids)), f + ": duplicate panel ids"
    out.append("  - name: %s\n    rules:" % d["uid"])
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"], "%s: panel %s has no query" % (f, p["title"])
        for t in p["targets"]:
            e = t["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
            for m in re.findall(r"\b((?:kcqrs|process)_[a-z_]+)", e):
                if m not in names:
                    bad.append("%s: %s: unknown metric %s" % (f, p["title"], m))
            n += 1
            out.append("      - record: dashboard:q%d\n        expr: %s" % (n, json.dumps(e)))
open(rules, "w").write("\n".join(out) + "\n")
print("queries", n)
sys.exit("\n".join(bad) if bad else 0)
PY
    echo "$output"
    [ "$status" -eq 0 ]
    run promtool check rules "$rules"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *SUCCESS* ]]
}
