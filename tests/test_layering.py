"""The package's layers import only downward, and no module imports one that imports it back.

    core, data  <  inference, compression  <  training  <  methods  <  teaching face
    (teaching, plots, widgets, exercises)

`qlearn/__init__.py` re-exports the public API and may import anything. Imports inside functions count too.
"""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "qlearn"
RANK = {"core": 0, "data": 1, "inference": 2, "compression": 2, "training": 3, "methods": 4,
        "teaching": 5, "plots": 5, "widgets": 5, "exercises": 5}
FACE = {"teaching", "plots", "widgets", "exercises"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Absolute names of the qlearn modules (or packages) that `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "qlearn"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "qlearn":
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` may import the submodule x
                candidate = PKG.parent.joinpath(*f"{target}.{alias.name}".split("."))
                if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
                    found.add(f"{target}.{alias.name}")
    return found


def layer(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the top-level qlearn package


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def forbidden(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when it may."""
    a, b = layer(importer), layer(imported)
    if a is None:  # qlearn/__init__.py re-exports the public API
        return None
    if b is None:
        return "a sub-package imports the top-level qlearn package (import the module itself)"
    if a == b:
        return None
    if a not in RANK or b not in RANK:
        return f"unknown layer {a if a not in RANK else b!r}: add it to RANK in this test"
    if b in FACE and a not in FACE:
        return f"{b} is teaching face: only teaching, plots, widgets and exercises may import it"
    if RANK[b] >= RANK[a] and a not in FACE:
        return f"{a} (layer {RANK[a]}) may import only lower layers, and {b} is layer {RANK[b]}"
    return None


@pytest.mark.parametrize("importer", sorted(MODULES), ids=str)
def test_imports_go_only_downward(importer):
    problems = {imp: why for imp in sorted(imports_of(MODULES[importer])) if (why := forbidden(importer, imp))}
    assert not problems, f"{importer}: {problems}"


def test_the_rule_catches_a_forbidden_import():
    assert forbidden("qlearn.core.primitives", "qlearn.inference.linear")
    assert forbidden("qlearn.inference.linear", "qlearn.training.qat")
    assert forbidden("qlearn.inference.kernels", "qlearn.compression.prune")
    assert forbidden("qlearn.training.qat", "qlearn.plots.qat")
    assert forbidden("qlearn.methods.gptq", "qlearn")
    assert not forbidden("qlearn.training.qat", "qlearn.inference.linear")
    assert not forbidden("qlearn.widgets.explorer", "qlearn.plots")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import loop of `graph` (module -> modules it imports), each as [m, ..., m]."""
    cycles = []

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycles.append(path + [nxt])
            elif nxt not in path:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return cycles


def test_find_cycles_finds_a_loop():
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"], ["b", "a", "b"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    """Between modules (package __init__ files, which import their own modules, left out)."""
    modules = {m for m, p in MODULES.items() if p.name != "__init__.py"}
    graph = {m: {i for i in imports_of(MODULES[m]) if i in modules and i != m} for m in modules}
    assert not find_cycles(graph)


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_every_module_declares_all(module):
    """Each module says what is public: `__all__` at the top level (the fuzz in test_public_api_fuzz walks it)."""
    tree = ast.parse(MODULES[module].read_text())
    assert any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
               for node in tree.body), f"{module} declares no __all__"
