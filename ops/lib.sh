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
