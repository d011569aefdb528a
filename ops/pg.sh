#!/usr/bin/env bash
# ops/pg.sh — a local PostgreSQL 15 (Debian's /usr/lib/postgresql/15/bin) for
# `make up` and the end-to-end tests.
#
#   ops/pg.sh start  DATA_DIR PORT [--no-fsync]
#   ops/pg.sh stop   DATA_DIR
#   ops/pg.sh status DATA_DIR          exit 0 running, 3 stopped
#
# DATA_DIR is the cluster's data directory (PGDATA), initialised on first start
# (UTF8, C locale). Our settings live in DATA_DIR/kcqrs.conf, rewritten on every
# start and included from postgresql.conf: listen on 127.0.0.1:PORT only, unix
# socket in DATA_DIR. The server log is DATA_DIR/postgresql.log. `start` waits
# until the server accepts connections (pg_ctl -w), then creates the login role
# `kcqrs` and the database `kcqrs` owned by it if they are missing.
#
# Authentication is `trust` for local connections and for 127.0.0.1/::1: anybody
# on this machine can connect as any role. That is acceptable for a development
# cluster bound to loopback; never use these scripts for a shared host.
#
# --no-fsync (for the test harness): fsync, synchronous_commit and
# full_page_writes off. Fast, and a crash of the machine can corrupt the cluster.
#
# PostgreSQL refuses to run as root: as root, the cluster is owned by and runs as
# the `postgres` user (DATA_DIR is chown'ed to it, and directories above it that
# `postgres` cannot enter get o+x, which allows entering, not listing). As any
# other user it runs as that user.
#
# Environment: KQ_PG_BIN (default /usr/lib/postgresql/15/bin), KQ_PG_USER /
# KQ_PG_DB (default kcqrs), KQ_PG_START_TIMEOUT (default 60 s).
set -euo pipefail

PGBIN=${KQ_PG_BIN:-/usr/lib/postgresql/15/bin}
DB_USER=${KQ_PG_USER:-kcqrs}
DB_NAME=${KQ_PG_DB:-kcqrs}

KQ_PROG=pg.sh
# shellcheck source=ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { usage_from_header 8; }

[[ "$DB_USER" =~ ^[a-z_][a-z0-9_]*$ && "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] ||
    die "KQ_PG_USER / KQ_PG_DB must be plain lower-case identifiers"
[[ -x "$PGBIN/pg_ctl" ]] ||
    die "PostgreSQL binaries not found in $PGBIN (apt-get install postgresql-15, or set KQ_PG_BIN; run ops/install-deps.sh)"

if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run PostgreSQL"
    RUNAS=(runuser -u postgres --)
    OWNER=postgres
else
    RUNAS=()
    OWNER=$(id -un)
fi

as_owner() { "${RUNAS[@]}" "$@"; }

port_busy() { [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }

abs_dir() {
    # The path ends up in a config file and on pg_ctl's shell command line.
    [[ "$1" != *[[:space:]\'\"\\]* ]] || die "DATA_DIR must not contain spaces, quotes or backslashes: '$1'"
    mkdir -p "$1"
    (cd "$1" && pwd)
}

is_running() { [[ -f "$1/PG_VERSION" ]] && as_owner "$PGBIN/pg_ctl" status -D "$1" >/dev/null 2>&1; }

conf_value() { sed -n "s/^$2 = '\{0,1\}\([^']*\)'\{0,1\}.*/\1/p" "$1/kcqrs.conf" 2>/dev/null | head -n1; }

# As root: make sure `postgres` can reach DATA_DIR through every parent.
grant_traverse() {
    local dir="$1" a="" part
    [[ ${#RUNAS[@]} -gt 0 ]] || return 0
    as_owner test -x "$dir" 2>/dev/null && return 0
    IFS=/ read -r -a parts <<<"${dir#/}"
    for part in "${parts[@]}"; do
        a="$a/$part"
        [[ "$a" == "$dir" ]] && break
        if ! as_owner test -x "$a" 2>/dev/null; then
            echo "pg.sh: allowing the postgres user to enter $a (chmod o+x)" >&2
            chmod o+x "$a"
        fi
    done
}

write_conf() {
    local dir="$1" port="$2" fsync="$3" sync_commit=on fpw=on
    if [[ "$fsync" == off ]]; then
        sync_commit=off
        fpw=off
    fi
    as_owner tee "$dir/kcqrs.conf" >/dev/null <<EOF
# Written by ops/pg.sh on every start (included from postgresql.conf); edits are lost.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = $fsync
synchronous_commit = $sync_commit
full_page_writes = $fpw
max_connections = 100
# Sized for projector replays: the events table and its indexes stay in
# memory, and checkpoints do not come every 1 GB of WAL during a rebuild.
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_connections = off
EOF
}

cmd_start() {
    [[ $# -ge 2 && $# -le 3 ]] || usage
    local dir port="$2" fsync=on t0 timeout
    if [[ $# -eq 3 ]]; then
        [[ "$3" == --no-fsync ]] || usage
        fsync=off
    fi
    [[ "$port" =~ ^[0-9]+$ && "$port" -ge 1 && "$port" -le 65535 ]] || die "not a port number: '$port'"
    dir=$(abs_dir "$1")

    if is_running "$dir"; then
        echo "postgres: already running on 127.0.0.1:$(conf_value "$dir" port), data $dir"
        return 0
    fi
    if port_busy "$port"; then
        die "port $port is already in use on this machine:
$(ss -Hltnp "sport = :$port" 2>/dev/null | sed 's/^/    /')
    choose another port (KCQRS_PG_PORT for make up)"
    fi

    t0=$(now)
    chown "$OWNER" "$dir"
    chmod 700 "$dir"
    grant_traverse "$dir"
    if [[ ! -f "$dir/PG_VERSION" ]]; then
        [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty and holds no PostgreSQL cluster"
        local nosync=()
        [[ "$fsync" == off ]] && nosync=(--no-sync)
        as_owner "$PGBIN/initdb" -D "$dir" -U postgres -E UTF8 --no-locale -A trust \
            "${nosync[@]}" >"$dir.initdb.log" 2>&1 ||
            { cat "$dir.initdb.log" >&2; rm -f "$dir.initdb.log"; die "initdb $dir failed"; }
        rm -f "$dir.initdb.log"
        echo "include_if_exists = 'kcqrs.conf'" | as_owner tee -a "$dir/postgresql.conf" >/dev/null
    fi
    write_conf "$dir" "$port" "$fsync"

    timeout=${KQ_PG_START_TIMEOUT:-60}
    # pg_ctl -w returns when the server accepts connections; the postmaster
    # runs in its own session (pg_ctl calls setsid), so Ctrl-C of the caller
    # does not reach it.
    if ! as_owner "$PGBIN/pg_ctl" start -D "$dir" -w -t "$timeout" -s \
        -l "$dir/postgresql.log" >/dev/null; then
        echo "---- last lines of $dir/postgresql.log:" >&2
        tail -n 30 "$dir/postgresql.log" >&2 || true
        die "PostgreSQL did not start (see $dir/postgresql.log)"
    fi

    "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        >/dev/null <<EOF || die "creating role/database $DB_USER/$DB_NAME failed"
SELECT format('CREATE ROLE %I LOGIN', '$DB_USER')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER')\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_USER')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
EOF
    echo "postgres: ready on 127.0.0.1:$port after $(elapsed "$t0") s (fsync $fsync, data $dir, log $dir/postgresql.log, dsn postgresql://$DB_USER@127.0.0.1:$port/$DB_NAME)"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir="$1" t0
    if [[ ! -f "$dir/PG_VERSION" ]]; then
        echo "postgres: not running (no cluster in $dir)"
        return 0
    fi
    dir=$(cd "$dir" && pwd)
    if ! is_running "$dir"; then
        echo "postgres: not running ($dir)"
        return 0
    fi
    t0=$(now)
    if ! as_owner "$PGBIN/pg_ctl" stop -D "$dir" -m fast -w -t 30 -s; then
        echo "pg.sh: fast shutdown did not finish in 30 s; immediate shutdown" >&2
        as_owner "$PGBIN/pg_ctl" stop -D "$dir" -m immediate -w -t 30 -s || true
    fi
    echo "postgres: stopped in $(elapsed "$t0") s ($dir)"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir="$1"
    [[ -d "$dir" ]] && dir=$(cd "$dir" && pwd)
    if is_running "$dir"; then
        echo "postgres: running on 127.0.0.1:$(conf_value "$dir" port), data $dir"
        return 0
    fi
    echo "postgres: stopped ($dir)"
    return 3
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
