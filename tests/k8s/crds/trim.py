"""Trim vendored CRDs: drop descriptions, keep only the Strimzi v1 version (run in this folder)."""
import sys, yaml
from pathlib import Path
keep_versions = {"kafka.strimzi.io": {"v1"}}
def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node
for path in Path(".").glob("*.yaml"):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    out = []
    for crd in docs:
        group = crd["spec"]["group"]
        versions = [v for v in crd["spec"]["versions"] if v["name"] in keep_versions.get(group, {v["name"] for v in crd["spec"]["versions"]})]
        crd = {"apiVersion": crd["apiVersion"], "kind": crd["kind"],
               "metadata": {"name": crd["metadata"]["name"]},
               "spec": {"group": group, "names": crd["spec"]["names"], "scope": crd["spec"]["scope"],
                        "versions": [{"name": v["name"], "served": v.get("served"), "storage": v.get("storage"),
                                      "schema": strip(v["schema"])} for v in versions]}}
        out.append(crd)
    path.write_text(yaml.safe_dump_all(out, sort_keys=False, width=200))
