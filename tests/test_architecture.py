"""The package's shape (docs/architecture.md): imports point down the layers, never in a circle,
and no function grows past what a reader takes in at once."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "polstereo"

# Lower layers never import higher ones. A module may import its own layer and any below.
LAYERS = {
    "errors": 0, "devices": 0, "interrupts": 0, "__init__": 0,
    "polar": 1, "io": 1,
    "data": 2, "models": 2,
    "evaluation": 3,
    "inference": 4, "export": 4,
    "training": 5,
    "cli": 6,
}
MAX_FUNCTION_LINES = 120


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """polstereo modules ``path`` imports anywhere in it (function-level imports count too);
    ``from a.b import c`` counts as ``a.b.c`` when that is a module, else as ``a.b``."""
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("polstereo")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("polstereo"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return LAYERS[top]


def test_the_graph_sees_imports_at_module_and_function_level():
    graph = _graph()
    assert "polstereo.evaluation.feasibility" in graph["polstereo.training.setup"]  # at the top
    assert "polstereo.evaluation.evaluate" in graph["polstereo.cli.evaluate"]        # inside a function
    assert sum(map(len, graph.values())) > 150


def test_every_package_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert tops <= set(LAYERS), f"give {sorted(tops - set(LAYERS))} a layer in LAYERS and docs/architecture.md"


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in _graph().items() for b in targets
                    if _layer(b) > _layer(a) and not b == "polstereo")
    assert upward == [], "imports from a higher layer:\n" + "\n".join(upward)


def test_measuring_inference_and_export_do_not_reach_into_training_or_the_cli():
    graph = _graph()
    bad = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                 if a.split(".")[1:2] in (["evaluation"], ["inference"], ["export"])
                 and b.split(".")[1:2] in (["training"], ["cli"]))
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    # a package's __init__ re-exporting its modules is not a cycle of the code
    graph = {a: {b for b in targets if not (_modules()[b].name == "__init__.py" and a.startswith(b + "."))}
             for a, targets in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_screenful_or_two(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
