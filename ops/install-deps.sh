#!/usr/bin/env bash
# ops/install-deps.sh — install what building, testing and running kcqrs needs on
# Debian 12, then fetch the Kafka jars. Idempotent, and quick (well under a second
# plus the Kafka stamp check) when everything is present: packages are checked
# with dpkg-query, and apt-get runs (update once, then install) only for the
# missing ones. Called by `make test`, `make up` and `make bench` (target `deps`).
#
# Needs root for apt-get; as another user it uses sudo when available.
# KQ_SKIP_KAFKA_FETCH=1 skips the Kafka jars; KQ_SKIP_TEST_TOOLS=1 the test-only tools
# (ops/install-test-tools.sh).
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

if [[ "${KQ_SKIP_KAFKA_FETCH:-0}" != 1 ]]; then
    "$REPO/ops/kafka.sh" fetch
fi

# The tools single e2e files need (Playwright, schemathesis, kustomize/kubeconform,
# Jaeger): ops/install-test-tools.sh. KQ_SKIP_TEST_TOOLS=1 skips them (`make up` and
# `make bench` do not need them; `.ci/run` installs them in the background).
if [[ "${KQ_SKIP_TEST_TOOLS:-0}" != 1 ]]; then
    "$REPO/ops/install-test-tools.sh"
fi
