"""The shape of the code: no import loops in `dfbench/`, and one gather and one scoring path for every command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dfbench

ROOT = Path(dfbench.__file__).resolve().parent


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports there never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the dfbench modules it imports anywhere (top level or inside a function), except under
    TYPE_CHECKING. ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``; a package's
    own ``__init__`` is not counted as imported by its submodules (Python runs it, but it is not their choice)."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] != root.name:
                    continue
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_loop_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_imports(tmp_path: Path):
    package = tmp_path / "dfbench"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from dfbench.sub import two\n")
    (package / "sub" / "two.py").write_text("from ..one import f\nfrom typing import TYPE_CHECKING\n"
                                            "if TYPE_CHECKING:\n    from dfbench import three\n")
    (package / "three.py").write_text("import dfbench.one\n")
    graph = import_graph(package)
    assert graph["dfbench.one"] == {"dfbench.sub.two"} and graph["dfbench.sub.two"] == {"dfbench.one"}
    assert cycles(graph) == [["dfbench.one", "dfbench.sub.two"]]


def test_dfbench_has_no_import_loop():
    graph = import_graph()
    assert len(graph) > 60 and "dfbench.gather" in graph["dfbench.pipeline"]
    assert cycles(graph) == []


@pytest.mark.parametrize("module", ["dfbench.pipeline", "dfbench.predict", "dfbench.training.data"])
def test_run_predict_and_train_gather_through_one_module(module: str):
    graph = import_graph()
    assert "dfbench.gather" in graph[module]
    # nobody but the gatherer decodes, finds or cuts
    assert not graph[module] & {"dfbench.video.engine", "dfbench.faces.finder", "dfbench.faces.mapping"}


def test_one_place_turns_uint8_crops_into_model_input():
    writers = [p.relative_to(ROOT.parent).as_posix() for p in ROOT.rglob("*.py") if "div_(255)" in p.read_text()]
    assert writers == ["dfbench/scoring.py"]
