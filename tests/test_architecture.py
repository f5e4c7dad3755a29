"""Architecture rules, checked on the source with ``ast`` (nothing of the project is imported):

- no import cycles between the modules of ``hf_tasks``, ``dataset_scripts`` and ``model_cards`` (lazy imports inside
  functions count; imports under ``if TYPE_CHECKING:`` do not);
- outside ``hf_tasks/tasks/`` no code switches on a built-in task name (``cfg.task == "detection"``, or a dict keyed
  by several task names): what differs between tasks belongs to the task's own folder;
- files and functions stay small enough to read.

Each rule is a plain function returning every offender, so ``tests/test_architecture_checks.py`` runs it on small
projects written to ``tmp_path`` and proves that it does fail where it should (and does not where it should not).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRAPH_PACKAGES = ("hf_tasks", "dataset_scripts", "model_cards")
SIZE_PACKAGES = ("hf_tasks", "dataset_scripts", "tests", "benchmarks")
TASKS_DIR = ROOT / "hf_tasks" / "tasks"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


# --------------------------------------------------------------------------------------------------------- helpers
def python_files(directory: Path) -> list[Path]:
    """Every ``.py`` file under ``directory``, sorted, skipping ``__pycache__`` and hidden folders."""
    return sorted(p for p in directory.rglob("*.py")
                  if not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(directory).parts))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def snippet(source: str, node: ast.AST, width: int = 100) -> str:
    text = " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------------------------- 1. import cycles
@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line
    statement: str
    implicit: bool  # True: the target is a package whose __init__ runs because a submodule of it is imported


def project_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in packages:
        for path in python_files(root / package):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, path, is_package)
    return modules


def is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (any ``<module>.TYPE_CHECKING``)."""
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


class ImportCollector(ast.NodeVisitor):
    """Every import statement of a file, at any depth (functions, methods, try/except...), except the body of an
    ``if TYPE_CHECKING:`` (its ``else:`` runs, so it is collected)."""

    def __init__(self) -> None:
        self.imports: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.imports.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.imports.append(node)


def enclosing_packages(name: str) -> set[str]:
    """``a.b.c`` -> ``{"a", "a.b"}``: the packages a module lives in (already imported whenever it runs)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def longest_module_prefix(dotted: str, modules: dict[str, Module]) -> str | None:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return None


def resolve_from_base(module: Module, node: ast.ImportFrom) -> str | None:
    """The absolute module that ``from <base> import ...`` names (relative imports resolved); None if invalid."""
    if node.level == 0:
        return node.module
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    keep = len(parts) - (node.level - 1)
    if keep <= 0:
        return None
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def explicit_targets(module: Module, node: ast.Import | ast.ImportFrom, modules: dict[str, Module]) -> set[str]:
    """The project modules an import statement names (``from pkg import name`` -> ``pkg.name`` if that is a module
    of the project, else ``pkg``)."""
    targets: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = longest_module_prefix(alias.name, modules)
            if target:
                targets.add(target)
        return targets
    base = resolve_from_base(module, node)
    if base is None:
        return targets
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        target = candidate if alias.name != "*" and candidate in modules else longest_module_prefix(base, modules)
        if target:
            targets.add(target)
    return targets


def import_edges(root: Path, packages: tuple[str, ...]) -> list[Edge]:
    """The edges of the project's import graph. Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` too, so
    those packages are (implicit) targets as well -- except the packages the importing module itself lives in: they
    are imported before it anyway, so only an explicit import of them is an edge."""
    modules = project_modules(root, packages)
    edges: list[Edge] = []
    for module in modules.values():
        source = module.path.read_text(encoding="utf-8")
        collector = ImportCollector()
        collector.visit(ast.parse(source, filename=str(module.path)))
        own_packages = enclosing_packages(module.name)
        for node in collector.imports:
            where = f"{rel(module.path, root)}:{node.lineno}"
            statement = snippet(source, node)
            for target in sorted(explicit_targets(module, node, modules)):
                if target != module.name:
                    edges.append(Edge(module.name, target, where, statement, implicit=False))
                for package in sorted(enclosing_packages(target)):
                    if package in modules and package != module.name and package not in own_packages:
                        edges.append(Edge(module.name, package, where, statement, implicit=True))
    return edges


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit). Returns every component, each sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = lowlink[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def shortest_cycle(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """One shortest path start -> ... -> start inside the component (breadth-first), for the report."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start]


def import_cycles(root: Path, packages: tuple[str, ...]) -> list[str]:
    """One readable report per cycle (strongly connected component of two or more modules); empty when none."""
    edges = import_edges(root, packages)
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        graph[edge.source].add(edge.target)
    reports = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        members = set(component)
        inside = sorted((e for e in edges if e.source in members and e.target in members),
                        key=lambda e: (e.source, e.target, e.where))
        lines = [f"cycle of {len(component)} modules: {', '.join(component)}",
                 f"  e.g. {' -> '.join(shortest_cycle(component[0], graph, members))}",
                 "  edges within it:"]
        for e in inside:
            how = " (implicit: runs the package __init__)" if e.implicit else ""
            lines.append(f"    {e.source} -> {e.target}{how}    {e.where}: {e.statement}")
        reports.append("\n".join(lines))
    return reports


def test_no_import_cycles():
    cycles = import_cycles(ROOT, GRAPH_PACKAGES)
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s) between the modules of {', '.join(GRAPH_PACKAGES)} (lazy imports "
                    "inside functions count; 'if TYPE_CHECKING:' imports do not):\n\n" + "\n\n".join(cycles),
                    pytrace=False)


# ------------------------------------------------------------------------------- 2. task names outside tasks/
def builtin_task_names(tasks_dir: Path) -> set[str]:
    return {p.name for p in tasks_dir.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}


def task_name_uses(path: Path, task_names: set[str], root: Path) -> list[str]:
    """Comparisons with a task name (``==``, ``!=``, ``in``, ...; a tuple/list/set of names as one side counts) and
    dict literals keyed by two or more task names (per-task switch tables) in one file."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Compare):
            names = set()
            for operand in (node.left, *node.comparators):
                elements = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                names |= {e.value for e in elements if isinstance(e, ast.Constant) and e.value in task_names}
            if names:
                text = f"comparison with task name(s) {', '.join(map(repr, sorted(names)))}: {snippet(source, node)}"
                found.append((node.lineno, f"{rel(path, root)}:{node.lineno}: {text}"))
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in task_names}
            if len(keys) >= 2:
                text = f"dict keyed by task names {', '.join(map(repr, sorted(keys)))}: {snippet(source, node)}"
                found.append((node.lineno, f"{rel(path, root)}:{node.lineno}: {text}"))
    return [text for _, text in sorted(found)]


def task_name_offenders(package_dir: Path, tasks_dir: Path, root: Path) -> list[str]:
    task_names = builtin_task_names(tasks_dir)
    offenders = []
    for path in python_files(package_dir):
        if path.is_relative_to(tasks_dir):
            continue
        offenders += task_name_uses(path, task_names, root)
    return offenders


def test_no_task_name_outside_tasks():
    task_names = builtin_task_names(TASKS_DIR)
    assert task_names, f"no task packages found under {TASKS_DIR}"
    offenders = task_name_offenders(ROOT / "hf_tasks", TASKS_DIR, ROOT)
    if offenders:
        pytest.fail(f"{len(offenders)} place(s) outside hf_tasks/tasks/ switch on a built-in task name "
                    f"({', '.join(sorted(task_names))}); what differs per task belongs to the task's folder:\n"
                    + "\n".join(f"  {o}" for o in offenders), pytrace=False)


# -------------------------------------------------------------------------------- 3. small files and functions
def function_lengths(tree: ast.Module) -> list[tuple[str, int, int]]:
    """(qualified name, first line of the ``def``, length in lines without decorators) of every function and method,
    nested ones included."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def size_offenders(root: Path, packages: tuple[str, ...], max_file: int = MAX_FILE_LINES,
                   max_function: int = MAX_FUNCTION_LINES) -> list[str]:
    offenders = []
    for package in packages:
        for path in python_files(root / package):
            source = path.read_text(encoding="utf-8")
            lines = len(source.splitlines())
            if lines > max_file:
                offenders.append(f"{rel(path, root)}: file of {lines} lines (max {max_file})")
            for name, lineno, length in function_lengths(ast.parse(source, filename=str(path))):
                if length > max_function:
                    offenders.append(f"{rel(path, root)}:{lineno}: {name}() is {length} lines (max {max_function})")
    return offenders


def test_files_and_functions_are_small():
    offenders = size_offenders(ROOT, SIZE_PACKAGES)
    if offenders:
        pytest.fail(f"{len(offenders)} file(s)/function(s) too long in {', '.join(SIZE_PACKAGES)} (files at most "
                    f"{MAX_FILE_LINES} lines, functions at most {MAX_FUNCTION_LINES} lines from 'def' to their "
                    "last line):\n" + "\n".join(f"  {o}" for o in offenders), pytrace=False)
