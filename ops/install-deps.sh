#!/usr/bin/env bash
# ops/install-deps.sh — install what building, testing and running kcqrs needs on
# Debian 12, then fetch the Kafka jars. Idempotent, and quick (well under a second
# plus the Kafka stamp check) when everything is present: packages are checked
# with dpkg-query, and apt-get runs (update once, then install) only for the
# missing ones. Called by `make test`, `make up` and `make bench` (target `deps`).
#
# Needs root for apt-get; as another user it uses sudo when available.
# KQ_SKIP_KAFKA_FETCH=1 skips the Kafka jars; KQ_SKIP_JAEGER=1 skips building Jaeger.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# What each package is for:
#   build-essential pkg-config         the C toolchain; pkg-config flags in the Makefile
#   librdkafka-dev libpq-dev liblmdb-dev libmicrohttpd-dev libcurl4-openssl-dev
#   libjansson-dev libssl-dev          the libraries we link (PKGS in the Makefile)
#   flatbuffers-compiler               flatc: test oracle and `flatc --conform` schema check
#   libcmocka-dev bats                 unit tests and end-to-end tests
#   postgresql-15                      the server binaries in /usr/lib/postgresql/15/bin
#                                      (pulls postgresql-client-15 for psql)
#   curl                               HTTP calls in the end-to-end tests
#   wrk                                HTTP load for `make bench`
#   clang libclang-rt-14-dev           `make fuzz` (libFuzzer runtime is in libclang-rt)
#   clang-format                       `make format` / `make format-check` (CI)
#   python3                            free-port picking and small helpers in the tests
#   python3-yaml                       tests/e2e/deploy.bats reads the rendered manifests
#   procps iproute2 util-linux         ps, ss (port checks), runuser/setsid (ops scripts)
#   maven                              fetches the Kafka jars from Maven Central
#   prometheus                         promtool: the tests check every service's /metrics,
#                                      the alert rules and the dashboards' queries with it
#                                      (Debian ships promtool only in this package: 22.5 MB
#                                      to download with its small libjs dependencies, 96 MB
#                                      installed; the server it also brings is not started)
#   default-jre-headless               only if no Java >= 11 is installed
#   python3-venv                       the API contract test's venv (tests/e2e/openapi.bats):
#                                      schemathesis and openapi-python-client from PyPI
#   chromium                           the web console's browser test (tests/e2e/console.bats):
#                                      headless Chromium driven by Playwright (PyPI, a venv too)
#   npm                                only if no npm is installed: axe-core for that test
#   systemd                            systemd-analyze: tests/e2e/deploy.bats verifies ops/systemd/
#                                      (nothing is started: the package's own units stay off in
#                                      a container)
PACKAGES=(
    build-essential pkg-config
    librdkafka-dev libpq-dev liblmdb-dev libmicrohttpd-dev libcurl4-openssl-dev
    libjansson-dev libssl-dev
    flatbuffers-compiler
    libcmocka-dev bats
    postgresql-15
    curl wrk
    clang libclang-rt-14-dev clang-format
    python3 python3-yaml
    procps iproute2 util-linux
    maven
    prometheus
    python3-venv
    chromium
    systemd
)

log() { echo "install-deps: $*"; }
die() {
    echo "install-deps: $*" >&2
    exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        SUDO=(NO_ROOT)
    fi
fi

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

java_ok() {
    command -v java >/dev/null || return 1
    local v major
    v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    major=${v%%.*}
    [[ "$major" == 1 ]] && major=$(echo "$v" | cut -d. -f2)
    [[ "$major" =~ ^[0-9]+$ && "$major" -ge 11 ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
java_ok || missing+=(default-jre-headless)
command -v npm >/dev/null || missing+=(npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: this script supports Debian 12"
    if [[ "${SUDO[0]:-}" == NO_ROOT ]]; then
        die "missing packages: ${missing[*]}
  installing them needs root: run 'sudo ops/install-deps.sh' (or as root:
  apt-get update && apt-get install -y --no-install-recommends ${missing[*]})"
    fi
    log "installing: ${missing[*]}"
    # Installing a postgresql-NN package normally creates and starts a "main"
    # cluster on port 5432, which would take the port `make up` uses. We run our
    # own clusters (ops/pg.sh), so tell postgresql-common not to.
    if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
        "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" |
            "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/kcqrs-no-main.conf >/dev/null
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    # The prometheus package enables its server (port 9090) on a systemd host; we want
    # only promtool, so a server we just installed is stopped and disabled.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
        "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    java_ok || die "Java 11 or newer is still missing after installing default-jre-headless"
else
    log "all ${#PACKAGES[@]} packages present, java ok"
fi

# The console's browser test: Playwright (pinned) in a venv under the git-ignored .cache/
# (it drives Debian's chromium, never a browser build of its own), and axe-core from npm
# at the version tests/browser/package-lock.json pins. Each is redone only when missing or
# at another version.
PLAYWRIGHT_VERSION=1.65.3
BROWSER_VENV="$REPO/.cache/browser-venv"
if ! "$BROWSER_VENV/bin/python" -c "import sys, importlib.metadata as m
sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
    log "installing Playwright $PLAYWRIGHT_VERSION into $BROWSER_VENV"
    /usr/bin/python3 -m venv "$BROWSER_VENV"
    "$BROWSER_VENV/bin/pip" install -q --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
fi
if ! cmp -s "$REPO/tests/browser/package-lock.json" \
    "$REPO/tests/browser/node_modules/.kcqrs-installed-lock" 2>/dev/null; then
    log "installing tests/browser's npm packages (npm ci)"
    (cd "$REPO/tests/browser" && npm ci --no-audit --no-fund --loglevel=error &&
        cp package-lock.json node_modules/.kcqrs-installed-lock)
fi
# The API contract test (tests/e2e/openapi.bats): schemathesis and openapi-python-client,
# pinned, in a venv under the git-ignored .cache/; redone only when missing or at another
# version (the check takes about half a second; a fresh install about 75 s).
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
OPENAPI_VENV="$REPO/.cache/openapi-venv"
if ! "$OPENAPI_VENV/bin/python" -c "import sys, importlib.metadata as m
sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION' or
         m.version('openapi-python-client') != '$OPENAPI_PYTHON_CLIENT_VERSION')" 2>/dev/null; then
    log "installing schemathesis $SCHEMATHESIS_VERSION and openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION into $OPENAPI_VENV"
    /usr/bin/python3 -m venv "$OPENAPI_VENV"
    "$OPENAPI_VENV/bin/pip" install -q --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
fi

# The deployment test (tests/e2e/deploy.bats): kustomize and kubeconform from the Go
# module proxy (go install, into the git-ignored .cache/bin; about 80 s and 120 s on
# an empty module cache, about 9 s for both with the machine's module and build caches
# warm) and the Kubernetes 1.32 API schemas that kubeconform validates against, taken
# from the PyPI package kubernetes-validate (which ships them): its wheel fetched by
# pip download (no install) and only that version's schema files unpacked into
# .cache/k8s-schemas (about 5 s); each redone only when missing or at another version.
KUSTOMIZE_VERSION=v5.5.0
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VALIDATE_VERSION=1.37.0
GO=$(command -v go || echo /usr/local/go/bin/go)
# (a go-installed kustomize prints "(devel)" as its version: a stamp file says which)
if [[ ! -x "$REPO/.cache/bin/kustomize" ||
    "$(cat "$REPO/.cache/bin/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]]; then
    [[ -x "$GO" ]] || die "go is needed to install kustomize (tests/e2e/deploy.bats): not found in PATH nor /usr/local/go/bin"
    log "installing kustomize $KUSTOMIZE_VERSION into $REPO/.cache/bin (go install)"
    GOBIN="$REPO/.cache/bin" GOFLAGS=-mod=mod "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    echo "$KUSTOMIZE_VERSION" >"$REPO/.cache/bin/kustomize.version"
fi
if [[ ! -x "$REPO/.cache/bin/kubeconform" ||
    "$(cat "$REPO/.cache/bin/kubeconform.version" 2>/dev/null)" != "$KUBECONFORM_VERSION" ]]; then
    [[ -x "$GO" ]] || die "go is needed to install kubeconform (tests/e2e/deploy.bats): not found in PATH nor /usr/local/go/bin"
    log "installing kubeconform $KUBECONFORM_VERSION into $REPO/.cache/bin (go install)"
    GOBIN="$REPO/.cache/bin" GOFLAGS=-mod=mod "$GO" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    echo "$KUBECONFORM_VERSION" >"$REPO/.cache/bin/kubeconform.version"
fi
K8S_SCHEMAS="$REPO/.cache/k8s-schemas"
K8S_SCHEMA_VERSION=1.32.0
if [[ "$(cat "$K8S_SCHEMAS/version" 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION/$K8S_SCHEMA_VERSION" ]]; then
    log "unpacking the Kubernetes $K8S_SCHEMA_VERSION schemas of kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $K8S_SCHEMAS"
    k8s_tmp=$(mktemp -d)
    # pip download from the wheel cache or PyPI: the same pip the other venvs use
    [[ -x "$REPO/.cache/openapi-venv/bin/pip" ]] || die "no pip in $REPO/.cache/openapi-venv"
    "$REPO/.cache/openapi-venv/bin/pip" download -q --disable-pip-version-check --no-deps \
        -d "$k8s_tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    rm -rf "$K8S_SCHEMAS"
    /usr/bin/python3 - "$k8s_tmp"/kubernetes_validate-*.whl "$K8S_SCHEMAS" "v$K8S_SCHEMA_VERSION-local-strict" <<'PY'
import os, sys, zipfile
whl, out, ver = sys.argv[1:]
z = zipfile.ZipFile(whl)
for n in z.namelist():
    if f"/kubernetes-json-schema/{ver}/" in n:
        dst = os.path.join(out, ver, os.path.basename(n))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(z.read(n))
PY
    echo "$KUBERNETES_VALIDATE_VERSION/$K8S_SCHEMA_VERSION" >"$K8S_SCHEMAS/version"
    rm -rf "$k8s_tmp"
fi

# The traces test (tests/e2e/traces.bats): Jaeger's all-in-one binary (the OpenTelemetry
# collector based one that the module's tag v1.75.0 builds from cmd/jaeger), from the Go
# module proxy into the git-ignored .cache/jaeger-v1.75.0/, only when missing. `go install
# ...@v1.75.0` refuses this module (its go.mod has a replace directive), so the module is
# downloaded and built where it lies, with module and build caches in a temporary
# directory under .cache/ that is removed afterwards. A fresh build is slow: 891 s on 2
# shared cores (1.3 GB of modules, 1.6 GB of build cache); a present binary costs nothing.
# KQ_SKIP_JAEGER=1 (set by `make up` and `make bench`, which do not need it) skips it.
JAEGER_VERSION=v1.75.0
JAEGER_BIN="$REPO/.cache/jaeger-$JAEGER_VERSION/jaeger"
if [[ "${KQ_SKIP_JAEGER:-0}" != 1 && ! -x "$JAEGER_BIN" ]]; then
    GO=${GO:-/usr/local/go/bin/go}
    [[ -x "$GO" ]] || GO=$(command -v go) || die "Go is needed to build Jaeger (tests/e2e/traces.bats)"
    log "building Jaeger $JAEGER_VERSION into $JAEGER_BIN (from the Go module proxy; minutes)"
    mkdir -p "$REPO/.cache"
    jtmp=$(mktemp -d "$REPO/.cache/jaeger-build.XXXXXX")
    jdir=$(GOMODCACHE="$jtmp/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
        "$GO" mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$(dirname "$JAEGER_BIN")"
    (cd "$jdir" && GOMODCACHE="$jtmp/mod" GOCACHE="$jtmp/cache" GOFLAGS=-modcacherw \
        GOTOOLCHAIN=local "$GO" build -trimpath -o "$JAEGER_BIN.tmp" ./cmd/jaeger)
    mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
    rm -rf "$jtmp"
fi

if [[ "${KQ_SKIP_KAFKA_FETCH:-0}" != 1 ]]; then
    "$REPO/ops/kafka.sh" fetch
fi
