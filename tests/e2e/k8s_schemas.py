#!/usr/bin/env python3
"""k8s_schemas.py — standalone JSON schemas for kubeconform, from the Kubernetes
API schemas that the PyPI package kubernetes-validate ships.

    k8s_schemas.py SCHEMADIR OUTDIR MANIFEST...

kubernetes-validate keeps one file per kind (<kind>-<group>-<version>.json,
kubeconform's file naming) whose $refs point into a shared
/api/_definitions.json (whose own $refs are local to it). For every kind found in the MANIFEST files this writes
OUTDIR/<kind>-<group>-<version>.json with the definitions it reaches copied
into its own $defs and the $refs made local, so kubeconform
(-schema-location 'OUTDIR/{{ .ResourceKind }}{{ .KindSuffix }}.json') needs no
network. SCHEMADIR is one version's directory of the package, e.g.
.cache/k8s-schemas/v1.32.0-local-strict (ops/install-deps.sh unpacks it; the
strict variant refuses unknown fields). Exit status 0, or 1 when a kind has
no schema.
"""
import json
import os
import sys

import yaml

REF = "/api/_definitions.json#/$defs/"  # the kinds' references
LOCAL = "#/$defs/"  # the definitions' references to each other


def localise(node, defs, seen, todo):
    """Rewrite the $refs of node in place; queue the definitions they name."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith((REF, LOCAL)):
                name = v.split("#/$defs/", 1)[1]
                node[k] = LOCAL + name
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
            else:
                localise(v, defs, seen, todo)
    elif isinstance(node, list):
        for v in node:
            localise(v, defs, seen, todo)


def main():
    base, out, manifests = sys.argv[1], sys.argv[2], sys.argv[3:]
    defs = json.load(open(os.path.join(base, "_definitions.json")))["$defs"]
    kinds = set()
    for m in manifests:
        for d in yaml.safe_load_all(open(m)):
            if d:
                group, _, ver = d["apiVersion"].rpartition("/")
                name = d["kind"].lower() + ("-" + group.split(".")[0] if group else "") + "-" + ver
                kinds.add(name)
    os.makedirs(out, exist_ok=True)
    rc = 0
    for name in sorted(kinds):
        path = os.path.join(base, name + ".json")
        if not os.path.exists(path):
            print(f"k8s_schemas: no schema {name}.json in {base}", file=sys.stderr)
            rc = 1
            continue
        schema = json.load(open(path))
        schema.pop("$id", None)
        seen, todo, own = set(), [], {}
        localise(schema, defs, seen, todo)
        while todo:
            n = todo.pop()
            own[n] = json.loads(json.dumps(defs[n]))
            localise(own[n], defs, seen, todo)
        schema["$defs"] = own
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(schema, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
