"""Fails when any module of monitor/ or web/ imports itself through others (an import circle), counting the
imports made only for type checking and those inside functions too: those hide a circle, they do not remove it.
Run by `make lint`, beside import-linter's layer contracts (pyproject.toml)."""

from __future__ import annotations

import sys

import grimp

# Circles known and left for now, each with why. Empty this list, never grow it.
KNOWN: set[frozenset[str]] = set()


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main() -> int:
    graph = grimp.build_graph("monitor", "web")
    new = [c for c in circles(graph) if frozenset(c) not in KNOWN]
    for circle in new:
        print("import circle:", " <-> ".join(circle), file=sys.stderr)
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
