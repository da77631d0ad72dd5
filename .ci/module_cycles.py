#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

For each crate given, every `src/**/*.rs` file is a module (`a/b.rs` and `a/b/mod.rs` are
`a::b`). Each path a module names (`crate::x::y`, `super::x`, `self::x`, in `use` items and in
code) is an edge to the longest known module the path starts with; a name re-exported at the
crate root or by a parent module (`pub use x::Item`) is resolved to the module that defines it,
as a reader would resolve it. Declaring a child module (`mod x;`) is not an edge. Strongly
connected components of more than one module are cycles: printed, and the exit code is 1.

Usage: module_cycles.py CRATE_DIR...
"""
import os
import re
import sys


def modules(src):
    found = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(root, f)
    return found


def strip(text):
    # Inline test modules (at the end of a file, by convention) are not part of the graph.
    # A test module (`#[cfg(test)]`, `#[cfg(all(test, feature = "x"))]`) is not the crate's.
    text = re.split(r"#\[cfg\([^\]]*\btest\b[^\]]*\)\]\s*mod\s+\w+\s*\{", text)[0]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def use_trees(text):
    """Expands `use a::{b, c::{d, e}};` into full paths."""
    out = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        tree = re.sub(r"\s+as\s+\w+", "", m.group(1))
        out.extend(expand(re.sub(r"\s+", "", tree)))
    return out


def expand(tree):
    if "{" not in tree:
        return [tree]
    head, rest = tree.split("{", 1)
    inner = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        parts.append(cur)
    return [p for part in parts if part for p in expand(head + part)]


def absolute(path, module, mods=()):
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if tuple(module) + (segs[0],) in mods:
        return list(module) + segs
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] == "self":
        return list(module) + segs[1:]
    if segs[0] == "super":
        base = list(module)
        while segs and segs[0] == "super":
            base = base[:-1]
            segs = segs[1:]
        return base + segs
    return None


def main(crates):
    failed = False
    for crate in crates:
        src = os.path.join(crate, "src")
        mods = modules(src)
        texts = {m: strip(open(p).read()) for m, p in mods.items()}
        # Re-exports: (module, item name) -> defining path.
        reexports = {}
        for m, text in texts.items():
            for path in use_trees(" ".join(re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", text))):
                full = absolute(path, m, mods)
                if full:
                    reexports[(m, full[-1])] = full

        def resolve(full, depth=0):
            best = ()
            for i in range(len(full), 0, -1):
                if tuple(full[:i]) in mods:
                    best = tuple(full[:i])
                    break
            rest = full[len(best):]
            if rest and (best, rest[0]) in reexports and depth < 8:
                target = reexports[(best, rest[0])]
                if target != full:
                    return resolve(target + rest[1:], depth + 1)
            return best

        edges = {m: set() for m in mods}
        for m, text in texts.items():
            paths = use_trees(text)
            paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
            for path in paths:
                full = absolute(path, m, mods)
                if full is None:
                    continue
                target = resolve(full)
                if target != m and target in mods and not (
                    len(target) == len(m) + 1 and target[: len(m)] == m
                ):
                    edges[m].add(target)
        for cycle in sccs(edges):
            failed = True
            names = sorted("::".join(c) or "crate" for c in cycle)
            print(f"{crate}: modules in a cycle: {', '.join(names)}")
            for a in cycle:
                for b in sorted(edges[a] & set(cycle)):
                    print(f"    {'::'.join(a) or 'crate'} -> {'::'.join(b) or 'crate'}")
        print(f"{crate}: {len(mods)} modules, {sum(map(len, edges.values()))} edges checked")
    return 1 if failed else 0


def sccs(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
