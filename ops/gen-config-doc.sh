#!/usr/bin/env bash
# Regenerate the configuration table in README.md from the binary's own table
# (lib/kq_config.c), between the markers <!-- config:begin --> and <!-- config:end -->.
# usage: ops/gen-config-doc.sh BINARY README.md
set -euo pipefail
bin=$1 readme=$2
table=$("$bin" --config-markdown)
python3 - "$readme" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
b, e = "<!-- config:begin -->", "<!-- config:end -->"
i, j = text.index(b) + len(b), text.index(e)
open(path, "w", encoding="utf-8").write(text[:i] + "\n" + table.rstrip("\n") + "\n" + text[j:])
PY
