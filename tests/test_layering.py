"""The shape docs/architecture.md describes, checked on the source: one-way imports, no cycles."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "entrypoint"
CAPABILITIES = ("packages", "models", "supervisor", "swap")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: frozenset[str]) -> set[str]:
    """Every ``entrypoint.*`` module *path* imports, at any depth (function-local ones too).

    ``from entrypoint.models import catalog`` imports the submodule ``catalog``: the edge
    goes there, not to the package's ``__init__`` (which would be a cycle only if it were
    the names of ``__init__`` that were imported).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(node.module)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    names = frozenset(paths)
    return {name: imports_of(path, names) - {name} for name, path in paths.items()}


def area(module: str) -> str:
    """``cli``, ``plan``, ``packages``... (``python -m entrypoint`` is the CLI too)."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    return "cli" if name == "__main__" else name


def test_nothing_imports_the_cli() -> None:
    offenders = {m: sorted(i for i in deps if area(i) == "cli") for m, deps in graph().items() if area(m) != "cli"}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_capabilities_never_import_each_other() -> None:
    crossing = {
        m: sorted(i for i in deps if area(i) in CAPABILITIES and area(i) != area(m))
        for m, deps in graph().items()
        if area(m) in CAPABILITIES
    }
    assert {m: d for m, d in crossing.items() if d} == {}


def test_helpers_import_no_capability_and_neither_plan_nor_boot() -> None:
    upper = {*CAPABILITIES, "cli", "plan", "boot"}
    helpers = {m: deps for m, deps in graph().items() if area(m) not in upper}
    assert {
        m: sorted(i for i in d if area(i) in upper) for m, d in helpers.items() if any(area(i) in upper for i in d)
    } == {}


def test_no_import_cycle() -> None:
    """No module imports, directly or not, a module that imports it back."""
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_front_doors_never_import_their_verbs() -> None:
    """A capability's ``__init__`` is what boot and plan walk; its ``verbs`` (the CLI's commands)
    stay off that path: neither the front door nor boot nor plan imports them, at any depth."""
    edges = graph()
    verbs = {m for m in edges if m.endswith(".verbs") and area(m) in CAPABILITIES}
    assert {f"entrypoint.{c}.verbs" for c in ("models", "packages", "supervisor")} <= verbs

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for dep in edges.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    starts = [f"entrypoint.{c}" for c in CAPABILITIES] + [m for m in edges if area(m) in ("boot", "plan")]
    assert {m: sorted(reach(m) & verbs) for m in starts if reach(m) & verbs} == {}


def compiles_at_import(tree: ast.Module) -> list[int]:
    """Lines of the ``re.compile(...)`` calls that run when the module is imported.

    A function's body runs later and a lambda's too; its decorators and default values run
    at import, like a class body, so those are searched.
    """
    lines: list[int] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            continue
        if isinstance(node, ast.Lambda):
            todo += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            continue
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr == "compile" and getattr(func.value, "id", None) == "re":
            lines.append(node.lineno)
        todo += ast.iter_child_nodes(node)
    return sorted(lines)


def test_no_regex_is_compiled_at_import() -> None:
    """A warm boot compiles only the regular expressions it uses (docs/architecture.md,
    "Laziness"): a module-level pattern is a string, and re compiles and caches it on first use."""
    found = {
        module_name(path): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := compiles_at_import(ast.parse(path.read_text())))
    }
    assert found == {}, (
        "re.compile runs at import in these modules (module: lines); keep the pattern as a string "
        "constant and call re.match/re.fullmatch/re.search/... with it, so a warm boot compiles only "
        "what it uses (docs/architecture.md, 'Laziness')"
    )
