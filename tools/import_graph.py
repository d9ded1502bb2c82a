"""Import cycles in the ``twin`` package, from the source (nothing is imported).

    python tools/import_graph.py            # cycles of module-level imports, then of all imports
    python tools/import_graph.py --lazy     # also list every function-level import of twin code
    python tools/import_graph.py --root DIR # the package under DIR/twin (default: this checkout)

Edges come from ``import``/``from ... import`` statements and ``importlib.import_module("twin...")``
calls with a literal name: module-level ones (run when the module is imported) and, separately, those inside functions (run later; often written to dodge a cycle).
``from P import M`` with ``M`` a submodule is an edge to ``P.M``; a submodule's implicit import of
its parent package is not an edge. A cycle is a strongly connected set of two or more modules.
Exit status 1 when module-level imports form a cycle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(pkg_dir: Path) -> dict[str, Path]:
    """Module name -> file for every .py file of the package."""
    out = {}
    for p in sorted(pkg_dir.rglob("*.py")):
        rel = p.relative_to(pkg_dir.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the statement runs only when a function is called (or only for type checkers)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def _typing_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the statement sits under ``if TYPE_CHECKING:`` (it never runs: no import-order edge)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(mods: dict[str, Path], top: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level edges, function-level edges) between the package's modules."""
    eager: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}

    def target(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for ch in ast.iter_child_nodes(node):
                parents[ch] = node
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names = [node.args[0].value]   # importlib.import_module("twin.x") with a literal name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    names.append(sub if sub in mods else base)
            else:
                continue
            if _typing_only(node, parents):
                continue
            for n in names:
                if not (n == top or n.startswith(top + ".")):
                    continue
                t = target(n)
                if t is None or t == mod or mod.startswith(t + "."):
                    continue   # itself, or a parent package (imported before the module anyway)
                (lazy if _in_function(node, parents) else eager)[mod].add(t)
    return eager, lazy


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv: list[str]) -> int:
    root = Path(argv[argv.index("--root") + 1]) if "--root" in argv else ROOT
    mods = modules(root / "twin")
    eager, lazy = imports(mods, "twin")
    both = {m: eager[m] | lazy[m] for m in mods}
    top = cycles(eager)
    print(f"{len(mods)} modules in twin/")
    print(f"module-level import cycles: {len(top)}")
    for c in top:
        print("  " + " <-> ".join(c))
    allc = cycles(both)
    print(f"cycles counting function-level imports too: {len(allc)}")
    for c in allc:
        inner = sorted((a, b) for a in c for b in lazy[a] if b in c and b not in eager[a])
        print("  " + " <-> ".join(c))
        for a, b in inner:
            print(f"      lazy: {a} -> {b}")
    if "--lazy" in argv:
        print("function-level imports of twin modules:")
        for m in sorted(lazy):
            for t in sorted(lazy[m]):
                print(f"  {m} -> {t}")
    return 1 if top else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
