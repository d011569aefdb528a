#!/usr/bin/env bash
# The layering rule of the source folders, checked on their #include lines.
# usage: ops/check-layers.sh FOLDER:ALLOWED[,ALLOWED...] ...
#   e.g.  ops/check-layers.sh lib:lib events:events,lib query-api:query-api,events,lib
# The Makefile passes its LAYERS table (the same one it turns into each
# folder's -I flags). Every `#include "x.h"` of a .c/.h in FOLDER must name a
# header of one of the ALLOWED folders; a header of another listed folder is
# a violation, printed as "<file>:<line>: includes <folder>/<x.h>, but
# <FOLDER>/ may include only ..." and the exit status is 1. Headers in no
# listed folder (system, generated) are not this script's business. Silent
# when everything is in order.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=()
folders=()
for rule in "$@"; do
    f=${rule%%:*}
    allowed[$f]=",${rule#*:},"
    folders+=("$f")
done
bad=0
for f in "${folders[@]}"; do
    for src in "$f"/*.c "$f"/*.h; do
        [ -e "$src" ] || continue
        while IFS=: read -r line hdr; do
            [ -e "$f/$hdr" ] && continue # its own folder's
            owner=
            for g in "${folders[@]}"; do
                if [ -e "$g/$hdr" ]; then
                    owner=$g
                    break
                fi
            done
            if [ -n "$owner" ] && [[ "${allowed[$f]}" != *",$owner,"* ]]; then
                list=${allowed[$f]#,}
                list=${list%,}
                echo "$src:$line: includes $owner/$hdr, but $f/ may include only ${list//,/\/, }/ (Makefile LAYERS)" >&2
                bad=1
            fi
        done < <(awk '/^[ \t]*#[ \t]*include[ \t]*"/ { match($0, /"[^"]*"/);
                 print FNR ":" substr($0, RSTART + 1, RLENGTH - 2) }' "$src")
    done
done
if [ "$bad" = 1 ]; then
    echo "check-layers: forbidden includes above; move the shared code down a layer (lib/ or events/)" >&2
    exit 1
fi
