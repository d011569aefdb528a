#!/usr/bin/env bash
# ops/install-test-tools.sh [TOOL...] — install the tools that single end-to-end files
# need, each only when missing or at another version, into the git-ignored .cache/:
#   browser   Playwright + axe-core (tests/e2e/console.bats)
#   k8s       kustomize, kubeconform, kubernetes-validate (tests/e2e/deploy.bats)
#   openapi   schemathesis, openapi-python-client (tests/e2e/openapi.bats)
#   jaeger    Jaeger all-in-one, built from source (tests/e2e/traces.bats)
# No TOOL: all four, in that order (the order the e2e files need them).
#
# ops/install-deps.sh calls it with no TOOL (so `make test` on a fresh machine installs
# everything first); each of those e2e files also calls it for its own TOOL in
# setup_file. Each tool is installed under its own lock (.cache/<tool>.lock), so a
# file that needs a tool another run of this script is installing waits for it and
# then finds it present. `.ci/run` uses that: it starts this script in the background
# at the lowest CPU and I/O priority before `make test` (with KQ_SKIP_TEST_TOOLS=1),
# so the minutes of downloads and the Jaeger build use the cores the build and the
# tests leave idle instead of running before them.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "install-test-tools: $*"; }
die() {
    echo "install-test-tools: $*" >&2
    exit 1
}
mkdir -p "$REPO/.cache"
GO=$(command -v go || echo /usr/local/go/bin/go)

tool_browser() {
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
}

tool_openapi() {
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
}

# go_tool NAME VERSION PACKAGE: `go install PACKAGE@VERSION` into .cache/bin unless
# NAME is there at VERSION (a go-installed binary may print "(devel)" as its version,
# so a stamp file NAME.version says which).
go_tool() {
    local name="$1" version="$2" pkg="$3"
    [[ -x "$REPO/.cache/bin/$name" &&
        "$(cat "$REPO/.cache/bin/$name.version" 2>/dev/null)" == "$version" ]] && return 0
    [[ -x "$GO" ]] || die "go is needed to install $name (tests/e2e/deploy.bats): not found in PATH nor /usr/local/go/bin"
    log "installing $name $version into $REPO/.cache/bin (go install)"
    GOBIN="$REPO/.cache/bin" GOFLAGS=-mod=mod "$GO" install "$pkg@$version"
    echo "$version" >"$REPO/.cache/bin/$name.version"
}

tool_k8s() {
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
    go_tool kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5
    go_tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
    K8S_SCHEMAS="$REPO/.cache/k8s-schemas"
    K8S_SCHEMA_VERSION=1.32.0
    if [[ "$(cat "$K8S_SCHEMAS/version" 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION/$K8S_SCHEMA_VERSION" ]]; then
        log "unpacking the Kubernetes $K8S_SCHEMA_VERSION schemas of kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $K8S_SCHEMAS"
        k8s_tmp=$(mktemp -d)
        trap 'rm -rf "$k8s_tmp"' EXIT # also when a step fails (set -e)
        # pip download from the wheel cache or PyPI, with the pip of a venv of ours (Debian's
        # python3 has none): the other tools' venvs when present, else a small one of its own
        k8s_pip=
        for v in openapi-venv browser-venv pip-venv; do
            [[ -x "$REPO/.cache/$v/bin/pip" ]] && k8s_pip="$REPO/.cache/$v/bin/pip" && break
        done
        if [[ -z "$k8s_pip" ]]; then
            /usr/bin/python3 -m venv "$REPO/.cache/pip-venv"
            k8s_pip="$REPO/.cache/pip-venv/bin/pip"
        fi
        "$k8s_pip" download -q --disable-pip-version-check --no-deps \
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
        trap - EXIT
    fi
}

tool_jaeger() {
    # The traces test (tests/e2e/traces.bats): Jaeger's all-in-one binary (the OpenTelemetry
    # collector based one that the module's tag v1.75.0 builds from cmd/jaeger), from the Go
    # module proxy into the git-ignored .cache/jaeger-v1.75.0/, only when missing. `go install
    # ...@v1.75.0` refuses this module (its go.mod has a replace directive), so the module is
    # downloaded and built where it lies, with module and build caches in a temporary
    # directory under .cache/ that is removed afterwards. A fresh build is slow: 891 s on 2
    # shared cores (1.3 GB of modules, 1.6 GB of build cache); a present binary costs nothing.
    JAEGER_VERSION=v1.75.0
    JAEGER_BIN="$REPO/.cache/jaeger-$JAEGER_VERSION/jaeger"
    if [[ ! -x "$JAEGER_BIN" ]]; then
        [[ -x "$GO" ]] || die "Go is needed to build Jaeger (tests/e2e/traces.bats)"
        log "building Jaeger $JAEGER_VERSION into $JAEGER_BIN (from the Go module proxy; minutes)"
        mkdir -p "$REPO/.cache"
        jtmp=$(mktemp -d "$REPO/.cache/jaeger-build.XXXXXX")
        trap 'rm -rf "$jtmp"' EXIT # ~3 GB: never left behind by a failed step (set -e)
        jdir=$(GOMODCACHE="$jtmp/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
            "$GO" mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
        mkdir -p "$(dirname "$JAEGER_BIN")"
        (cd "$jdir" && GOMODCACHE="$jtmp/mod" GOCACHE="$jtmp/cache" GOFLAGS=-modcacherw \
            GOTOOLCHAIN=local "$GO" build -trimpath -o "$JAEGER_BIN.tmp" ./cmd/jaeger)
        mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
        rm -rf "$jtmp"
        trap - EXIT
    fi
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(browser k8s openapi jaeger)
for t in "${tools[@]}"; do
    case "$t" in
    browser | k8s | openapi | jaeger) ;;
    *) die "unknown tool '$t' (browser, k8s, openapi, jaeger)" ;;
    esac
    exec {lock}>"$REPO/.cache/$t.lock"
    flock "$lock"
    "tool_$t"
    exec {lock}>&-
done
