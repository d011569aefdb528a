#!/usr/bin/env bats
# deploy.bats — the deployment files are valid: ops/systemd/ units pass
# `systemd-analyze verify` with no complaint and `systemd-analyze security`
# rates each service's exposure at most 2.0 ("OK"); ops/k8s/ (the base and the
# example overlay) renders with kustomize and every object validates strictly
# (unknown fields rejected) with kubeconform against the Kubernetes 1.32 API
# schemas of the PyPI package kubernetes-validate, made standalone by
# k8s_schemas.py. Tools: `ops/install-test-tools.sh k8s` (systemd and python3-yaml from
# Debian, kustomize and kubeconform from the Go module proxy into
# .cache/bin, the schemas unpacked from the kubernetes-validate wheel into
# .cache/k8s-schemas). No services are started.

load helpers

KUSTOMIZE="$KQ_REPO/.cache/bin/kustomize"
SCHEMAS="$KQ_REPO/.cache/k8s-schemas/v1.32.0-local-strict"
KUBECONFORM="$KQ_REPO/.cache/bin/kubeconform"
K8S_VERSION=1.32.0

# units DIR: copies of ops/systemd in DIR, ExecStart pointing at the built
# binaries (verify checks that they exist), the template as its two instances.
units() {
    local f
    mkdir -p "$1"
    for f in "$KQ_REPO"/ops/systemd/*.service "$KQ_REPO"/ops/systemd/*.target; do
        sed "s|/opt/kcqrs/bin/|$KCQRS_BIN/|g" "$f" >"$1/$(basename "$f")"
    done
    cp "$1/kcqrs-projector@.service" "$1/kcqrs-projector@pg.service"
    cp "$1/kcqrs-projector@.service" "$1/kcqrs-projector@lmdb.service"
    rm "$1/kcqrs-projector@.service"
}
SERVICES=(kcqrs-commands.service kcqrs-query.service kcqrs-worker.service
    kcqrs-projector@pg.service kcqrs-projector@lmdb.service)

setup_file() {
    # the tool this file needs, installed if missing; waits if another run installs it
    "$KQ_REPO/ops/install-test-tools.sh" k8s >"$BATS_FILE_TMPDIR/tools.log" 2>&1 ||
        kq_fail "ops/install-test-tools.sh k8s failed: $(tail -20 "$BATS_FILE_TMPDIR/tools.log")" || return 1
}

@test "systemd: every unit passes systemd-analyze verify with no complaint; a broken one does not" {
    d="$BATS_TEST_TMPDIR/units"
    units "$d"
    cd "$d"
    run systemd-analyze verify "${SERVICES[@]}" kcqrs.target
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    # the check can fail: an unknown directive and a missing binary are reported
    sed -i 's/^Restart=on-failure/Restart=on-failure\nRestartOften=yes/' kcqrs-worker.service
    sed -i "s|$KCQRS_BIN/kcqrs-query|$KCQRS_BIN/kcqrs-nothing|" kcqrs-query.service
    run systemd-analyze verify kcqrs-worker.service kcqrs-query.service
    echo "$output"
    [[ "$output" == *"Unknown key 'RestartOften'"* ]]
    [[ "$output" == *"kcqrs-nothing"* ]]
}

@test "systemd: each service runs hardened (exposure <= 2.0), as the kcqrs user, restarted on failure, configured by its environment file" {
    d="$BATS_TEST_TMPDIR/units"
    units "$d"
    cd "$d"
    for u in "${SERVICES[@]}"; do
        run systemd-analyze security --offline=true --threshold=20 "$u"
        echo "$u: ${lines[-1]}"
        [ "$status" -eq 0 ] || { echo "$output"; false; }
        for want in User=kcqrs ProtectSystem=strict Restart=on-failure NoNewPrivileges=yes \
            EnvironmentFile=/etc/kcqrs/kcqrs.env StateDirectory=kcqrs; do
            grep -qx "$want" "$u" || kq_fail "$u: no $want"
        done
    done
    grep -q '^ExecStart=.*/kcqrs-projector --target %i$' "$KQ_REPO/ops/systemd/kcqrs-projector@.service"
    # the exposure check can fail: without the hardening a unit rates far worse
    grep -vE '^(Protect|Private|Restrict|NoNew|Capability|SystemCall|Lock|Memory|User=|Group=)' \
        kcqrs-worker.service >bare.service
    run systemd-analyze security --offline=true --threshold=20 bare.service
    [ "$status" -ne 0 ]
}

# render DIR: kustomize build of ops/k8s/DIR into $BATS_TEST_TMPDIR/DIR.yaml.
render() {
    local out="$BATS_TEST_TMPDIR/${1//\//_}.yaml"
    "$KUSTOMIZE" build "$KQ_REPO/ops/k8s/$1" >"$out"
    echo "$out"
}

# objects FILE EXPR: python over the rendered objects (list `docs`); exit 1 when EXPR is false.
objects() {
    python3 - "$@" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def kind(k): return [d for d in docs if d["kind"] == k]
def named(k, n): return next(d for d in docs if d["kind"] == k and d["metadata"]["name"] == n)
def containers(d): return d["spec"]["template"]["spec"]["containers"]
ok = eval(sys.argv[2])
if not ok:
    print("false:", sys.argv[2], file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

# kubeconform_run FILE...: kubeconform -strict against the standalone schemas
# of the kinds in FILE... (made by k8s_schemas.py in $BATS_TEST_TMPDIR/schemas).
kubeconform_run() {
    python3 "$KQ_REPO/tests/e2e/k8s_schemas.py" "$SCHEMAS" "$BATS_TEST_TMPDIR/schemas" "$@" ||
        return 2
    "$KUBECONFORM" -strict -summary \
        -schema-location "$BATS_TEST_TMPDIR/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

@test "k8s: base and example overlay render and validate strictly against the Kubernetes $K8S_VERSION schemas (kubeconform); a wrong field fails" {
    for dir in base overlays/example; do
        f=$(render "$dir")
        n=$(grep -c '^kind: ' "$f")
        [ "$n" -ge 16 ]
        run kubeconform_run "$f"
        echo "$dir: $output"
        [ "$status" -eq 0 ]
        [[ "$output" == *"$n resources found in 1 file - Valid: $n, Invalid: 0, Errors: 0, Skipped: 0"* ]]
    done
    # the validation can fail: a misspelt field and a wrong type are refused
    f="$BATS_TEST_TMPDIR/broken.yaml"
    sed 's/^  replicas: 1$/  replicas: one/; s/readinessProbe:/readinesProbe:/' \
        "$BATS_TEST_TMPDIR/overlays_example.yaml" >"$f"
    run kubeconform_run "$f"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"StatefulSet kcqrs-commands is invalid"*"'/spec/replicas': got string, want null or integer"* ]]
    [[ "$output" == *"additional properties 'readinesProbe' not allowed"* ]]
}

@test "k8s: one writer (StatefulSet), query pods with their LMDB projector, PostgreSQL projector with a standby, worker; probes, requests, PDBs" {
    f=$(render base)
    objects "$f" 'named("StatefulSet", "kcqrs-commands")["spec"]["replicas"] == 1'
    objects "$f" '[c["command"][-1] for c in containers(named("Deployment", "kcqrs-query"))] == ["/opt/kcqrs/bin/kcqrs-query", "lmdb"]'
    objects "$f" 'containers(named("Deployment", "kcqrs-projector-pg"))[0]["command"][-2:] == ["--target", "pg"] and named("Deployment", "kcqrs-projector-pg")["spec"]["replicas"] == 2'
    objects "$f" 'named("Deployment", "kcqrs-worker")["spec"]["replicas"] >= 1'
    # every container: liveness /health, readiness /ready, cpu and memory requests, no root
    objects "$f" 'all(c["livenessProbe"]["httpGet"]["path"] == "/health" and c["readinessProbe"]["httpGet"]["path"] == "/ready" and {"cpu", "memory"} <= set(c["resources"]["requests"]) and c["securityContext"]["readOnlyRootFilesystem"] for d in kind("Deployment") + kind("StatefulSet") for c in containers(d))'
    objects "$f" 'all(d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] for d in kind("Deployment") + kind("StatefulSet"))'
    # a PodDisruptionBudget selecting each workload's pods
    objects "$f" 'sorted(p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for p in kind("PodDisruptionBudget")) == sorted(d["metadata"]["name"] for d in kind("Deployment") + kind("StatefulSet"))'
    # configuration from the ConfigMap and Secrets; keys and Kafka properties mounted
    objects "$f" 'all({"kcqrs-config"} <= {e.get("configMapRef", {}).get("name") for e in c["envFrom"]} for d in kind("Deployment") + kind("StatefulSet") for c in containers(d))'
    objects "$f" '{s["metadata"]["name"] for s in kind("Secret")} == {"kcqrs-secrets", "kcqrs-keys", "kcqrs-kafka"}'
    objects "$f" 'sorted(s["metadata"]["name"] for s in kind("Service")) == ["kcqrs-commands", "kcqrs-commands-headless", "kcqrs-commands-internal", "kcqrs-query"]'
    # the overlay: its namespace everywhere, its image, three query hosts
    f=$(render overlays/example)
    objects "$f" 'all(d["metadata"].get("namespace") == "kcqrs" for d in docs if d["kind"] != "Namespace")'
    objects "$f" 'named("Deployment", "kcqrs-query")["spec"]["replicas"] == 3'
    objects "$f" '{c["image"] for d in kind("Deployment") + kind("StatefulSet") for c in containers(d)} == {"registry.example.com/kcqrs:0.1.0"}'
}
