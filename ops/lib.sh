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
