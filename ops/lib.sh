# ops/lib.sh — shell helpers shared by the ops scripts (sourced, not run).
# The sourcing script sets KQ_PROG (its name in messages) first.

die() {
    echo "${KQ_PROG:-ops}: $*" >&2
    exit 1
}

# Print the script's header comment (lines 2..$1 of the caller) as usage; exit 2.
usage_from_header() {
    sed -n "2,${1}p" "${BASH_SOURCE[1]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

now() { date +%s.%N; }
# Seconds since a `now` value, one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# kq_make_key BIN KEYS_FILE NAME ROLES KEY_FILE: unless KEY_FILE holds a key
# already, create key NAME with ROLES (BIN/kcqrs-keys appends its hash to
# KEYS_FILE) and write the key itself to KEY_FILE (mode 0600). Used by
# ops/up.sh for the local admin and worker keys.
kq_make_key() {
    local bin=$1 keys=$2 name=$3 roles=$4 out=$5
    [[ -s "$out" ]] && return 0
    [[ -x "$bin/kcqrs-keys" ]] || { echo "${KQ_PROG:-ops}: $bin/kcqrs-keys is not built (run make)" >&2; return 1; }
    (umask 077 && KCQRS_KEYS_FILE="$keys" "$bin/kcqrs-keys" create --name "$name" --roles "$roles" >"$out.tmp") || {
        rm -f "$out.tmp"
        return 1
    }
    mv "$out.tmp" "$out"
}

# ---- services: judged by their answer (GET /health), not by a pid file ----
#
# A pid file can lie: after `kill -9` the pid may still exist for a moment as a
# zombie nobody has reaped yet (kill -0 succeeds on it), or belong to another
# program later. So a service counts as running when http://ADDR/health
# answers, and a pid is only trusted when /proc says it is a live (not zombie)
# process of that program. var/<name>.addr remembers the address a service
# was started on, for `make down`.

# ---- HTTPS: the scheme and the CA the checks and printed URLs use ----
#
# The services speak HTTPS on every listener when KCQRS_HTTP_TLS_CERT (and
# _KEY) are set; the health checks then use https and trust
# KCQRS_HTTP_TLS_CA (a PEM file; "system" or unset: the system's CAs).
# kq_tls_init reads those settings into KQ_SCHEME (http or https) and
# KQ_CURL_TLS (curl's options); it runs when this file is sourced and again
# whenever the caller changes the settings.
kq_tls_init() {
    local cert=${KCQRS_HTTP_TLS_CERT:-none} ca=${KCQRS_HTTP_TLS_CA:-system}
    KQ_SCHEME=http
    KQ_CURL_TLS=()
    if [[ -n "$cert" && "$cert" != none ]]; then
        KQ_SCHEME=https
        [[ -n "$ca" && "$ca" != system ]] && KQ_CURL_TLS=(--cacert "$ca")
    fi
    return 0
}
kq_tls_init

# kq_url ADDR: the base URL of a service listening on ADDR.
kq_url() { echo "$KQ_SCHEME://$1"; }

# kq_curl ARGS...: curl with the CA of kq_tls_init.
kq_curl() { curl "${KQ_CURL_TLS[@]}" "$@"; }

# kq_tls_self_signed DIR: unless DIR holds them already, make a local CA
# (DIR/ca.pem, DIR/ca.key) and a server certificate signed by it
# (DIR/server.pem, DIR/server.key; subjectAltName 127.0.0.1, ::1, localhost
# and this host's name), keys mode 0600, valid 825 days. `make up HTTPS=1`
# uses it for var/tls. 0 on success; openssl's output on failure.
kq_tls_self_signed() {
    local d=$1 log
    [[ -s "$d/ca.pem" && -s "$d/server.pem" && -s "$d/server.key" ]] && return 0
    mkdir -p "$d" && chmod 700 "$d" || return 1
    log="$d/openssl.log"
    (
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=kcqrs local CA" \
            -keyout "$d/ca.key" -out "$d/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$d/server.key.tmp" -out "$d/server.csr" &&
            printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:%s\nextendedKeyUsage=serverAuth\n' \
                "$(hostname 2>/dev/null || echo localhost)" >"$d/server.ext" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -days 825 -extfile "$d/server.ext" -out "$d/server.pem.tmp"
    ) >"$log" 2>&1 || {
        cat "$log" >&2
        rm -f "$d/server.pem.tmp" "$d/server.key.tmp"
        return 1
    }
    chmod 644 "$d/ca.pem" "$d/server.pem.tmp"
    mv "$d/server.key.tmp" "$d/server.key"
    mv "$d/server.pem.tmp" "$d/server.pem"
    rm -f "$d/server.csr" "$d/server.ext" "$log"
}

# kq_health ADDR: 0 when ADDR's /health (kq_url) answers 2xx within a second.
kq_health() { kq_curl -sf --max-time 1 -o /dev/null "$(kq_url "$1")/health" 2>/dev/null; }

# kq_pid_live PID NAME: 0 when PID is a live process (not a zombie) of the
# program NAME (its /proc comm, which the kernel cuts at 15 bytes).
kq_pid_live() {
    local pid=${1:-} name=$2 state comm
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ "$comm" == "${name:0:15}" ]]
}

# kq_listener_pid ADDR: the pid of the process listening on ADDR's port, or "".
kq_listener_pid() {
    ss -Hltnp "sport = :${1##*:}" 2>/dev/null | sed -n 's/.*pid=\([0-9][0-9]*\).*/\1/p' | head -n 1
    true
}

# kq_service_start NAME BIN ADDR VAR [PROG [ARGS...]]: start BIN ARGS... in the background (pid in
# VAR/NAME.pid, log in VAR/NAME.log, its address in VAR/NAME.addr) and wait
# until ADDR's /ready answers (60 s; http or https: kq_url), unless /health answers
# already ("already running"). A pid file whose process is dead, a zombie or
# another program is stale and ignored; a live one that does not answer gets
# 10 s to answer /health (it may be starting), then make up fails rather than
# start a second copy. The service gets the caller's environment. PROG is
# the program's name when NAME is an instance of it (kcqrs-query-2 is a
# kcqrs-query; default NAME).
kq_service_start() {
    local name=$1 bin=$2 addr=$3 var=$4 pidf="$4/$1.pid" logf="$4/$1.log" pid old
    local prog=${5:-$1}
    shift 4
    [[ $# -gt 0 ]] && shift
    old=$(cat "$pidf" 2>/dev/null || true)
    if kq_health "$addr"; then
        pid=$(kq_listener_pid "$addr")
        echo "$name: already running on $(kq_url "$addr") (pid ${pid:-?})"
        return 0
    fi
    if kq_pid_live "$old" "$prog"; then
        for _ in $(seq 1 100); do
            if kq_health "$addr"; then
                echo "$name: already running on $(kq_url "$addr") (pid $old)"
                return 0
            fi
            kq_pid_live "$old" "$prog" || break
            sleep 0.1
        done
        if kq_pid_live "$old" "$prog"; then
            echo "make up: $name (pid $old) runs but does not answer $(kq_url "$addr")/health; 'make down' stops it" >&2
            return 1
        fi
    fi
    [[ -n "$old" ]] && echo "$name: not answering on $(kq_url "$addr"); stale pid file ($old) ignored"
    rm -f "$pidf"
    [[ -x "$bin" ]] || { echo "make up: $bin is not built (run make)" >&2; return 1; }
    nohup "$bin" "$@" >>"$logf" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidf"
    echo "$addr" >"$var/$name.addr"
    for _ in $(seq 1 600); do
        if ! kq_pid_live "$pid" "$prog"; then
            rm -f "$pidf"
            echo "make up: $name exited; last lines of $logf:" >&2
            tail -n 20 "$logf" >&2
            return 1
        fi
        if kq_curl -sf --max-time 2 -o /dev/null "$(kq_url "$addr")/ready" 2>/dev/null; then
            echo "$name: ready on $(kq_url "$addr") (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    echo "make up: $name (pid $pid) not ready after 60 s: $(kq_curl -s --max-time 2 "$(kq_url "$addr")/ready" 2>&1)" >&2
    echo "last lines of $logf (access log left out):" >&2
    grep -v ' http [A-Z]* /' "$logf" | tail -n 5 >&2
    return 1
}

# kq_service_stop NAME ADDR VAR: stop what serves NAME: the process of the
# pid file if it is a live NAME, else the NAME process listening on ADDR if
# it answers /health. SIGTERM (the service finishes its work), then SIGKILL
# after 30 s. 0 when nothing of NAME runs afterwards.
kq_service_stop() { # NAME ADDR VAR [PROG]
    local name=$1 addr=$2 pidf="$3/$1.pid" pid prog=${4:-$1}
    pid=$(cat "$pidf" 2>/dev/null || true)
    if ! kq_pid_live "$pid" "$prog"; then
        pid=""
        if kq_health "$addr"; then
            pid=$(kq_listener_pid "$addr")
            kq_pid_live "$pid" "$prog" || {
                echo "$name: $(kq_url "$addr") answers but not from a $name process (pid ${pid:-?}); left alone" >&2
                rm -f "$pidf"
                return 1
            }
        fi
    fi
    if [[ -z "$pid" ]]; then
        [[ -e "$pidf" ]] && echo "$name: not running (stale pid file removed)" || echo "$name: not running"
        rm -f "$pidf"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kq_pid_live "$pid" "$prog" || { rm -f "$pidf"; echo "$name: stopped (pid $pid)"; return 0; }
        sleep 0.1
    done
    echo "$name: pid $pid did not stop within 30 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidf"
    return 1
}

# kq_service_addr NAME: the address `make up` gives service NAME (its
# KCQRS_<X>_ADDR setting, else the default); make down prefers VAR/NAME.addr.
# kq_service_prog NAME: the program of a service instance (kcqrs-query-2 -> kcqrs-query).
kq_service_prog() { echo "${1%-[0-9]*}"; }

kq_service_addr() {
    case $1 in
    kcqrs-commands) echo "${KCQRS_COMMANDS_ADDR:-127.0.0.1:8080}" ;;
    kcqrs-query) echo "${KCQRS_QUERY_ADDR:-127.0.0.1:8081}" ;;
    kcqrs-projector) echo "${KCQRS_PROJECTOR_ADDR:-127.0.0.1:8082}" ;;
    kcqrs-worker) echo "${KCQRS_WORKER_ADDR:-127.0.0.1:8083}" ;;
    *) return 1 ;;
    esac
}
