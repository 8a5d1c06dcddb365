"""Hostile device profiles: the shipped test registry mutated with hypothesis, for the loader's fuzz test.

Mutations retype values, drop and duplicate keys, break references (parents,
uplinks, power feeds, kinds) and write YAML scalars that PyYAML reads as dates,
times, NaN or huge numbers; :func:`write_registry` then writes the result,
sometimes damaged (truncated, not UTF-8, a directory where a file should be).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import strategies as st

from .strategies import hostile_text, ident

HERE = Path(__file__).resolve().parent
REGISTRY_DIR = HERE.parent / "fixtures" / "registry"

# --- profile loader -------------------------------------------------------------------------------

REGISTRY_FILES = ("kinds/air_quality.yaml", "kinds/server.yaml", "sites.yaml")

#: YAML scalars written as raw text: PyYAML turns some into dates, times, NaN, huge ints...
YAML_SCALARS = (
    "~", "null", "yes", "no", "on", "off", "true", "0", "-1", "0x1F", "0o17", "1_000", "1e400", "-1e400", ".nan", ".NaN",
    ".inf", "-.inf", "1e-400", "2001-02-03", "2001-02-30", "2001-13-01", "2001-02-03 25:00:00", "2001-02-03T04:05:06Z",
    "2001-02-03t04:05:06.1+07:00", "11:00", "190:20:30", "12:60", '"11:00"', "'11:99'", '""', "''", "[]", "{}",
    "[a, b]", "{a: 1}", "!!binary aGVsbG8=", "!!binary x", "!!str 1", "!!int x", "!!float x", "!!timestamp x",
    "!!timestamp", "!!int", "!!float", "!!bool x", "!!int 0x", "!!float .", "!!null x", "!!set [1]", "!!omap [a]", "9" * 5000,
    "!!python/object:os.system x", "&a 1", "*nope", str(2**80), "-" + str(2**80), "1" * 400, "😀", "\"\\u200f\"",
    '"\\0"', '"\\ud800"', "|\n  block", ">-\n  folded", "? complex", "%", "@reserved", "`tick", "a: b: c", "- x",
    "laocai/{site}/server/{device}", "laocai/+/server/{device}", "{device}", "dc-srv-01", "ta_van", "server",
    "air_quality", "json", "line_protocol", "district", "province", "float", "int", "bool",
)


_DOCS: dict[str, object] = {}


def registry_docs() -> dict[str, object]:
    """The test registry's files, parsed: a fresh copy, the starting point of every mutation."""
    import copy

    if not _DOCS:
        _DOCS.update({f: yaml.safe_load((REGISTRY_DIR / f).read_text(encoding="utf-8")) for f in REGISTRY_FILES})
    return copy.deepcopy(_DOCS)


def registry_texts() -> dict[str, str]:
    return {f: (REGISTRY_DIR / f).read_text(encoding="utf-8") for f in REGISTRY_FILES}


#: One mutation: (file, operation, where (an index into the file's nodes, wrapped), argument).
mutations = st.tuples(
    st.sampled_from(REGISTRY_FILES),
    st.sampled_from([
        "rename", "rename", "retype", "retype", "delete", "delete", "scalar", "scalar", "scalar", "duplicate",
        "dup_id", "site_cycle", "device_cycle", "dangling", "swap_kind",
    ]),
    st.integers(0, 10_000),
    st.one_of(ident, hostile_text, st.sampled_from(YAML_SCALARS), st.integers(-5, 5)),
)

#: Damage to a whole file's text after the structured mutations.
text_damage = st.one_of(
    st.just(None), st.just(None), st.just(None),
    st.tuples(st.sampled_from(REGISTRY_FILES), st.sampled_from([
        "truncate", "insert_bytes", "cp1258", "utf16", "empty", "delete_file", "deep_nesting", "tab_indent", "bom",
        "alias_bomb", "null_byte", "not_a_mapping",
    ]), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
)


def yaml_scalar_token(i: int) -> str:
    return f"ZZSCALAR{i}ZZ"



# --- registry mutation engine ---------------------------------------------------------------------


def _nodes(doc) -> list[tuple[object, object]]:
    """Every (container, key) in the document, depth first: the places a mutation can hit."""
    out = []
    todo = [doc]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for k in list(node):
                out.append((node, k))
                todo.append(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                out.append((node, i))
                todo.append(node[i])
    return out


def _retype(value, arg):
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {f"k{i}": v for i, v in enumerate(value)} if value else "[]"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return [value] if isinstance(arg, int) and arg % 2 else str(value)
    if isinstance(value, str):
        return {value: value} if isinstance(arg, int) and arg % 2 else len(value)
    return arg


def _sites(docs) -> list[dict]:
    sites = docs.get("sites.yaml")
    if isinstance(sites, dict) and isinstance(sites.get("sites"), list):
        return [s for s in sites["sites"] if isinstance(s, dict)]
    return []


def _devices(docs) -> list[dict]:
    return [d for s in _sites(docs) if isinstance(s.get("devices"), list) for d in s["devices"] if isinstance(d, dict)]


def apply_mutations(docs: dict[str, object], muts, scalars: dict[str, str]) -> None:
    """Apply structured mutations in place; raw YAML scalars are left as tokens in ``scalars``."""
    import copy

    for fname, op, where, arg in muts:
        doc = docs[fname]
        nodes = _nodes(doc)
        sites, devices = _sites(docs), _devices(docs)
        if op == "site_cycle" and sites:
            a, b = sites[where % len(sites)], sites[(where // 7) % len(sites)]
            a["parent"] = b.get("id")
            continue
        if op == "device_cycle" and len(devices) >= 1:
            a, b = devices[where % len(devices)], devices[(where // 7) % len(devices)]
            a["uplink" if where % 2 else "power"] = b.get("id")
            b["power" if where % 3 else "uplink"] = a.get("id")
            continue
        if op == "dup_id" and devices and sites:
            pool = devices if where % 2 else sites
            pool[where % len(pool)]["id"] = pool[(where // 5) % len(pool)].get("id")
            continue
        if op == "dangling" and (devices or sites):
            target = (devices + sites)[where % (len(devices) + len(sites))]
            target[("parent", "uplink", "power", "kind")[where % 4]] = str(arg) if not isinstance(arg, int) else "ghost"
            continue
        if op == "swap_kind" and devices:
            devices[where % len(devices)]["kind"] = ("server", "air_quality", "toaster", "Server")[where % 4]
            continue
        if not nodes:
            docs[fname] = arg if op != "scalar" else doc
            continue
        parent, key = nodes[where % len(nodes)]
        if op == "rename" and isinstance(parent, dict):
            new = arg if not isinstance(arg, str) or arg not in parent else arg + "_"
            parent[new] = parent.pop(key)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif op == "scalar":
            token = yaml_scalar_token(len(scalars))
            scalars[token] = arg if isinstance(arg, str) else str(arg)
            parent[key] = token
        else:  # retype, or rename/duplicate where they do not apply
            parent[key] = _retype(parent[key], arg)


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(docs: dict[str, object], scalars: dict[str, str]) -> dict[str, str]:
    out = {}
    for fname, doc in docs.items():
        text = yaml.dump(doc, Dumper=_DUMPER, allow_unicode=True, sort_keys=False, default_flow_style=None, width=1_000_000)
        for token, raw in scalars.items():
            text = text.replace(token, raw)
        out[fname] = text
    return out


def write_registry(directory: Path, texts: dict[str, str], damage) -> None:
    """Write the files under ``directory`` (kinds/ and sites.yaml), then damage one whole file."""
    (directory / "kinds").mkdir(parents=True, exist_ok=True)
    data = {f: t.encode("utf-8") for f, t in texts.items()}
    if damage is not None:
        fname, how, where, blob = damage
        b = data[fname]
        i = where % (len(b) + 1)
        if how == "truncate":
            b = b[:i]
        elif how == "insert_bytes":
            b = b[:i] + blob + b[i:]
        elif how == "cp1258":  # saved by a Windows editor in the Vietnamese code page
            b = texts[fname].encode("cp1258", errors="replace")
        elif how == "utf16":
            b = texts[fname].encode("utf-16")
        elif how == "empty":
            b = b""
        elif how == "delete_file":
            b = None
        elif how == "deep_nesting":
            depth = 50 + where % 3000
            b = b + b"\nzz_deep: " + b"[" * depth + b"]" * depth + b"\n"
        elif how == "tab_indent":
            b = b.replace(b"  ", b"\t")
        elif how == "bom":
            b = b"\xef\xbb\xbf" + b
        elif how == "alias_bomb":
            b = b + b"\nzz_a: &a [x, x, x, x, x, x, x, x]\nzz_b: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nzz_c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nzz_r: &r [*r]\n"
        elif how == "null_byte":
            b = b[:i] + b"\x00" + b[i:]
        elif how == "not_a_mapping":
            b = b"- " + b.replace(b"\n", b"\n  ")
        data[fname] = b
    for fname, b in data.items():
        if b is not None:
            (directory / fname).write_bytes(b)


