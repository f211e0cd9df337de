#!/usr/bin/env python3
"""Generates src/protobuf_schema.txt: the protobuf wire schema of the
Kubernetes API types, used by src/protobuf.rs to decode
`application/vnd.kubernetes.protobuf` bodies into JSON.

Sources (both crates are dependencies of minik-apimachinery):
  * k8s-pb 0.9: `#[prost(...)]` attributes give every field's tag, wire type
    and label; the module path gives the message's full name.
  * k8s-openapi 0.29 (v1_33): each type's Deserialize impl maps the JSON
    field name to the Rust field name (`"clusterIP" => Field::Key_cluster_ip`);
    k8s-pb aligned its Rust names with k8s-openapi, so that gives the exact
    JSON (= proto) name of each protobuf field.

Usage: python3 tools/gen_pb_schema.py [CARGO_REGISTRY_SRC_DIR]
Output lines:
  message <io.k8s.... full name>
  <tag> <jsonName> <o|r|m|i> <type> [z]
where o = optional, r = repeated, m = map<string, type>, i = embedded
(Go `json:",inline"`: the message's fields are merged into the parent); type is one of
string int32 int64 bool double bytes or a message full name; z = keep a
zero/empty scalar (the field is required or a Go pointer, see POINTER_ZERO).
"""
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "protobuf_schema.txt")

reg = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cargo/registry/src/*")
pb_dirs = glob.glob(os.path.join(reg, "k8s-pb-0.9.*", "src"))
oa_dirs = glob.glob(os.path.join(reg, "k8s-openapi-0.29.*", "src", "v1_33"))
if not pb_dirs or not oa_dirs:
    sys.exit("k8s-pb 0.9 / k8s-openapi 0.29 sources not found; run `cargo fetch` first or pass the registry src dir")
PB, OA = sorted(pb_dirs)[-1], sorted(oa_dirs)[-1]

# Rust module path (as list) -> openapi definition prefix
ROOTS = {
    "api": "io.k8s.api",
    "apimachinery": "io.k8s.apimachinery",
    "apiextensions_apiserver": "io.k8s.apiextensions-apiserver",
    "kube_aggregator": "io.k8s.kube-aggregator",
}


def mod_to_def(mod):
    root = ROOTS.get(mod[0])
    if root is None:
        return None
    return ".".join([root] + mod[1:])


# --- JSON names from k8s-openapi -------------------------------------------
json_names = {}  # def name -> {rust_name: json_name}
required = {}  # def name -> JSON names of required fields

# Go pointer fields (`*int32`, `*bool`) whose zero value means something other
# than "unset" (a bare name: in any message; Message.field: only there). Go writes pointer fields only when set and value fields always,
# and the wire cannot tell them apart, so a zero scalar is dropped (as Go's
# `omitempty` would) unless the field is required or listed here.
POINTER_ZERO = {
    "DeploymentSpec.replicas", "ReplicaSetSpec.replicas", "StatefulSetSpec.replicas",
    "ReplicationControllerSpec.replicas", "parallelism", "completions", "backoffLimit", "backoffLimitPerIndex",
    "maxFailedIndexes", "terminationGracePeriodSeconds", "automountServiceAccountToken",
    "enableServiceLinks", "allocateLoadBalancerNodePorts", "revisionHistoryLimit",
    "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "ttlSecondsAfterFinished",
    "startingDeadlineSeconds", "activeDeadlineSeconds", "runAsUser", "runAsGroup", "fsGroup",
    "defaultMode", "mode", "gracePeriodSeconds", "allowPrivilegeEscalation", "runAsNonRoot",
    "hostUsers", "setHostnameAsFQDN", "shareProcessNamespace", "suspend", "immutable",
    "optional", "expirationSeconds", "minAvailable", "maxUnavailable", "maxSurge",
    "progressDeadlineSeconds", "manualSelector",
}
for path in glob.glob(os.path.join(OA, "**", "*.rs"), recursive=True):
    src = open(path, encoding="utf-8").read()
    m = re.search(r'fn schema_name\(\) -> std::borrow::Cow<\'static, str> \{\s*"([^"]+)"', src)
    if not m:
        continue
    names = {}
    for jm in re.finditer(r'"([A-Za-z0-9$_-]+)" => Field::Key_([a-z0-9_]+),', src):
        names[jm.group(2)] = jm.group(1)
    json_names[m.group(1)] = names
    rm = re.search(r'\n            "required": \[([^\]]*)\]', src)
    required[m.group(1)] = set(re.findall(r'"([^"]+)"', rm.group(1))) if rm else set()

json_names_ci = {k.lower(): v for k, v in json_names.items()}
no_names = []
fallback = []

# --- wire schema from k8s-pb -------------------------------------------------
ATTR = re.compile(r'#\[prost\((.*)\)\]')
SCALARS = {"string", "int32", "int64", "bool", "double", "bytes"}


def resolve(typ, mod):
    """Resolves a Rust type path relative to module `mod` to a def name."""
    typ = typ.strip().rstrip(",").strip()
    for wrap in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        if typ.startswith(wrap):
            return resolve(typ[len(wrap):-1], mod)
    parts = typ.split("::")
    cur = list(mod)
    while parts and parts[0] == "super":
        cur.pop()
        parts.pop(0)
    full = cur + parts
    return mod_to_def(full[:-1]) + "." + full[-1]


def camel(snake):
    s = snake[2:] if snake.startswith("r#") else snake
    p = s.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])


def norm(s):
    return s.replace("_", "").lower()


messages = {}
parent_names = {}
for path in sorted(glob.glob(os.path.join(PB, "**", "mod.rs"), recursive=True)):
    rel = os.path.relpath(os.path.dirname(path), PB)
    mod = rel.split(os.sep)
    if mod[0] not in ROOTS:
        continue
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"pub struct (\w+) \{", lines[i])
        if not m:
            i += 1
            continue
        name = mod_to_def(mod) + "." + m.group(1)
        if lines[i].rstrip().endswith("{}"):
            messages[name] = []
            parent_names[name] = set()
            i += 1
            continue
        names = json_names.get(name) or json_names_ci.get(name.lower(), {})
        if not names:
            no_names.append(name)
        fields = []
        i += 1
        while not lines[i].startswith("}"):
            am = ATTR.search(lines[i])
            if not am:
                i += 1
                continue
            attr = am.group(1)
            i += 1
            decl = lines[i].strip()
            while not decl.endswith(",") or decl.count("<") != decl.count(">"):
                i += 1
                decl = decl + lines[i].strip()
            fm = re.match(r"pub (r#\w+|\w+): ?(.*),$", decl)
            if fm is None:
                sys.exit(f"cannot parse field {decl!r} in {name}")
            rust, rtype = fm.group(1), fm.group(2)
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            kind = attr.split(",")[0].split(" ")[0]
            rname = rust[2:] if rust.startswith("r#") else rust
            inline = False
            if rname in names:
                jname = names[rname]
            else:
                cands = [j for j in names.values() if norm(j) == norm(rname)]
                jname = cands[0] if len(cands) == 1 else camel(rust)
                if names and not cands and rname != "type":
                    fallback.append(f"{name}.{rname}->{jname}")
                    # A message field the JSON form does not have is a Go embedded
                    # struct (`json:",inline"`): its fields appear in the parent.
                    inline = True
            if kind == "btree_map":
                val = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
                if val == "message":
                    inner = rtype[rtype.index("<") + 1 : rtype.rindex(">")]
                    val = resolve(inner.split(",", 1)[1], mod)
                fields.append((int(tag), jname, "m", val, ""))
                continue
            label = "r" if "repeated" in attr else "o"
            if inline and kind == "message" and label == "o":
                label = "?"  # embedded or newer than k8s-openapi; decided below
            if kind == "message":
                typ = resolve(rtype, mod)
            elif kind in SCALARS:
                typ = kind
            else:
                sys.exit(f"unknown prost kind {kind} in {name}")
            short = name.rsplit(".", 1)[1] + "." + jname
            keep = "z" if jname in required.get(name, ()) or jname in POINTER_ZERO or short in POINTER_ZERO else ""
            fields.append((int(tag), jname, label, typ, keep))
        messages[name] = sorted(fields)
        parent_names[name] = set(names.values())
        i += 1

# A candidate is embedded when most of its own fields appear in the parent's
# JSON form; otherwise it is a field newer than k8s-openapi's v1_33 (kept).
for name, fields in messages.items():
    for n, (tag, jname, label, typ, keep) in enumerate(fields):
        if label != "?":
            continue
        child = [f[1] for f in messages.get(typ, [])]
        hits = sum(1 for c in child if c in parent_names[name])
        fields[n] = (tag, jname, "i" if child and hits * 2 >= len(child) else "o", typ, keep)

with open(OUT, "w", encoding="utf-8") as f:
    f.write("# Generated by tools/gen_pb_schema.py from k8s-pb 0.9 and k8s-openapi 0.29; do not edit.\n")
    for name in sorted(messages):
        f.write(f"message {name}\n")
        for tag, jname, label, typ, keep in messages[name]:
            f.write(f"{tag} {jname} {label} {typ}{' z' if keep else ''}\n")
print(f"{len(messages)} messages -> {OUT}")
print(f"messages without k8s-openapi names: {len(no_names)}", file=sys.stderr)
if os.environ.get("VERBOSE"):
    print("\n".join(no_names), file=sys.stderr)
print(f"fields named by fallback: {fallback}", file=sys.stderr)
