"""The package's shape (docs/architecture.md): imports point down the layers, never in a circle,
no function grows past what a reader takes in at once, and a model setting has one name."""

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import typing
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
MAX_FUNCTION_LINES = 80  # from `def` to the last line, docstring included


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


def _long_functions(source: str) -> list[str]:
    """The functions (methods and nested ones too) of ``source`` longer than :data:`MAX_FUNCTION_LINES`."""
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_screenful(path):
    long = _long_functions(path.read_text())
    assert long == [], (f"{path.relative_to(PACKAGE.parent)}: over {MAX_FUNCTION_LINES} lines: {', '.join(long)}; "
                        "split into named steps that read top to bottom")


def test_the_length_check_counts_from_def_to_the_last_line():
    # a method with a decorator, a docstring and MAX - 2 statements: MAX lines from `def`
    method = ["class A:", "    @staticmethod", "    def f():", '        """Doc."""',
              *(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))]
    assert _long_functions("\n".join(method)) == []
    assert _long_functions("\n".join(method + ["        y = 0"])) == [f"f ({MAX_FUNCTION_LINES + 1} lines, line 3)"]


# ---------------------------------------------------------------------------- one name per model setting
def _model_setting_names() -> dict[str, str]:
    """Every name the model gives one of its settings -> where it is declared: the fields of the
    config dataclasses of ``polstereo.models`` (the :class:`PlainConfig` ones: the correction module's,
    the base's, the polarization volume's ...) and the plain-valued options of :class:`PolStereoModel`
    (``max_correction``, ``base_input`` ...: what a model file records besides those configs)."""
    import polstereo.models
    from polstereo.models.full import PolStereoModel
    from polstereo.models.plain_config import PlainConfig

    for module in pkgutil.walk_packages(polstereo.models.__path__, "polstereo.models."):
        importlib.import_module(module.name)
    configs, todo = [], [PlainConfig]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if dataclasses.is_dataclass(cls) and cls.__module__.startswith("polstereo.models"):
            configs.append(cls)
    names = {f.name: f"{cls.__name__}.{f.name}"
             for cls in sorted(configs, key=lambda c: c.__qualname__) for f in dataclasses.fields(cls)}
    for option in inspect.signature(PolStereoModel).parameters.values():
        if isinstance(option.default, (bool, int, float, str, tuple)):
            names.setdefault(option.name, f"PolStereoModel({option.name}=...)")
    return names


def _option_paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every option field of dataclass ``cls``, its sections (dataclass-typed fields) walked."""
    hints = typing.get_type_hints(cls)
    paths = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _option_paths(hints[f.name], prefix + (f.name,))
        else:
            paths.append(prefix + (f.name,))
    return paths


def _renamed_settings(option_paths: list[tuple[str, ...]], model_names: dict[str, str]) -> list[str]:
    """The options whose name holds a model setting's name inside a longer one (``correction_width``
    for ``width``, ``max_correction_px`` for ``max_correction``): the setting declared again under
    another name. Names are compared word by word (``_``-separated), so ``new_correction`` does not
    hold ``max_correction``."""
    found = []
    for path in option_paths:
        words = path[-1].split("_")
        for name, where in model_names.items():
            part = name.split("_")
            if name != path[-1] and any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1)):
                found.append(f"TrainConfig.{'.'.join(path)} is {where} under another name")
    return found


def test_the_model_setting_names_are_those_of_the_model_configs():
    from polstereo.models.correction import CorrectionConfig

    names = _model_setting_names()
    assert {f.name for f in dataclasses.fields(CorrectionConfig)} <= set(names)
    assert names["max_correction"] == "PolStereoModel(max_correction=...)"


def test_the_training_config_does_not_rename_a_model_setting():
    # the model section only: optim.clip_grad_norm is the gradient's norm, not a normalisation layer
    from polstereo.training.config import TrainConfig

    model_section = typing.get_type_hints(TrainConfig)["model"]
    renamed = _renamed_settings(_option_paths(model_section, ("model",)), _model_setting_names())
    assert renamed == [], ("\n".join(renamed) + "\na model setting has the model's name: take it from the model's "
                           "config (as CorrectionOptions takes the switch() fields of CorrectionConfig)")


def test_a_prefixed_or_suffixed_copy_of_a_model_setting_is_found():
    model = {"width": "CorrectionConfig.width", "max_correction": "PolStereoModel(max_correction=...)"}
    paths = [("model", "correction_width"), ("model", "width_px"), ("model", "max_correction_px"),
             ("model", "correction", "width"), ("model", "max_correction"), ("model", "new_correction"),
             ("model", "widths")]
    assert _renamed_settings(paths, model) == [
        "TrainConfig.model.correction_width is CorrectionConfig.width under another name",
        "TrainConfig.model.width_px is CorrectionConfig.width under another name",
        "TrainConfig.model.max_correction_px is PolStereoModel(max_correction=...) under another name"]
