"""The package's layers, checked: no import cycle, no import running upward.

The folders of ``clfsload`` are layers (README, "Layout"); a module imports
only from its own layer or the layers below it. Read from the source with
:mod:`ast`, so lazy imports inside functions count too.
"""

import ast
import pathlib
from typing import Dict, List, Set

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "clfsload"

# Highest first. A module may import its own layer and any layer after it.
LAYERS = [
    ("__main__",),
    ("cli", "api"),
    ("driver",),
    ("execute",),
    ("read",),
    ("work",),
    # The typed options and the log set-up: built from the targets' types
    # (credentials, retry settings, secret redaction), used by all above.
    ("settings", "logsetup"),
    ("targets",),
    ("clfs",),
    ("_native",),
    # Leaves every layer may use: the errors, the process title, the crash
    # points of the kill campaign, the fsync helpers (the local target and
    # the state share them), and the format's constants (the encoders in
    # _native share them).
    ("errors", "proctitle", "crashpoints", "durable", "clfs.constants", "__init__"),
]


def module_names() -> Dict[str, pathlib.Path]:
    """Every module of the package, dotted, to its file."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: pathlib.Path, known: Set[str]) -> Set[str]:
    """The package modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        candidates: List[str] = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import mod`` imports pkg.mod (pkg itself is already
            # running or loaded as its parent); ``from mod import name``, mod.
            submodules = ["%s.%s" % (module, alias.name) for alias in node.names]
            candidates = [m for m in submodules if m in known]
            if len(candidates) < len(submodules):
                candidates.append(module)
        found.update(c for c in candidates if c in known and c != name)
    return found


def graph() -> Dict[str, Set[str]]:
    names = module_names()
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def layer_of(name: str) -> int:
    rest = name.split(".", 1)[1] if "." in name else "__init__"
    best = None
    for rank, members in enumerate(LAYERS):
        for member in members:
            if rest == member or rest.startswith(member + "."):
                if best is None or len(member) > len(best[1]):
                    best = (rank, member)
    assert best is not None, "%s is in no layer: add its folder to LAYERS" % name
    return best[0]


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_import_runs_upward():
    upward = [
        "%s -> %s" % (name, target)
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer_of(target) < layer_of(name)
    ]
    assert upward == []


def test_the_check_sees_a_cycle_and_an_upward_import():
    """The checks above can fail: a made-up graph with both faults is caught."""
    edges = {"clfsload.work.a": {"clfsload.work.b"}, "clfsload.work.b": {"clfsload.work.a", "clfsload.driver.x"},
             "clfsload.driver.x": set()}
    assert cycles(edges) == [["clfsload.work.a", "clfsload.work.b"]]
    assert layer_of("clfsload.driver.x") < layer_of("clfsload.work.b")
