"""The room rules of podwire/ (docs: the README's layout note), read from the
source with ``ast``: nothing is imported or run.

- no import cycle anywhere in the package;
- each room imports only from the rooms it may (agent imports no door, no
  API and not the composition root; backends import no API, agent, door,
  kind or driver; kinds import no agent, door or API; doors and the API
  import no kind or driver; data paths import no backend, agent, door, API or
  kind plugin; nothing but the CLI imports the composition root);
- only podwire/datapath/ imports pyroute2; only podwire/datapath/,
  podwire/ovsdb.py and the OVN backend (whose storage is the northbound
  database, read and written through ovsdbapp's schema API) import ovsdbapp;
- the agent names no data-path kind and no backend in its code (kind plugins
  and backends are picked by name from registries elsewhere).

An import is any ``import``/``from ... import`` statement, at module level or
inside a function, and ``importlib.import_module("<literal>")``; imports under
``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "podwire"

KIND_NAMES = ("veth_bridge", "veth_ovs", "macvlan", "ipvlan", "vlan_nested", "sriov", "vhostuser")
BACKEND_NAMES = ("ovn", "embedded", "neutron")

# (room, what it must not import); a room is a package or a module.
FORBIDDEN_IMPORTS = {
    "podwire.agent": ("podwire.frontends", "podwire.api", "podwire.daemon", "podwire.cli"),
    "podwire.backends": (
        "podwire.api",
        "podwire.agent",
        "podwire.frontends",
        "podwire.kinds",
        "podwire.datapath",
        "podwire.daemon",
        "podwire.cli",
    ),
    # Kinds sit between the data paths and the agent.
    "podwire.kinds": (
        "podwire.agent",
        "podwire.frontends",
        "podwire.api",
        "podwire.daemon",
        "podwire.cli",
    ),
    # Doors know the agent's request and result types, not kinds or drivers;
    # only the composition root (daemon/) knows the doors.
    "podwire.frontends": (
        "podwire.kinds",
        "podwire.datapath",
        "podwire.api",
        "podwire.daemon",
        "podwire.cli",
    ),
    "podwire.api": (
        "podwire.agent",
        "podwire.frontends",
        "podwire.kinds",
        "podwire.datapath",
        "podwire.daemon",
        "podwire.cli",
    ),
    "podwire.datapath": (
        "podwire.backends",
        "podwire.agent",
        "podwire.frontends",
        "podwire.api",
        "podwire.kinds",
    ),
}
# Third-party libraries only some rooms may import.
WRAPPED_LIBRARIES = {
    "pyroute2": ("podwire.datapath",),
    "ovsdbapp": ("podwire.datapath", "podwire.ovsdb", "podwire.backends.ovn"),
}


# --- reading the package --------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "podwire.agent.core"
    target: str  # what it imports, as absolute as can be told
    line: int
    path: Path

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(package.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes_that_run(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` (their
    ``else:`` runs, so it stays)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    # "from . import x" in a package's __init__ is relative to the package itself.
    drop = level - 1 if is_package else level
    if drop:
        base = base[:-drop]
    return ".".join(base + ([name] if name else []))


def imports_of(path: Path, module: str, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in _nodes_that_run(tree):
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, node.lineno, path) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                # "from pkg import mod" imports the module pkg.mod when there is one.
                sub = f"{base}.{alias.name}"
                out.append(Import(module, sub if sub in known else base, node.lineno, path))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append(Import(module, node.args[0].value, node.lineno, path))
    return out


def all_imports(package: Path = PACKAGE, root: Path = ROOT) -> list[Import]:
    modules = package_modules(package, root)
    known = set(modules)
    return [imp for name, path in modules.items() for imp in imports_of(path, name, known)]


def within(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


# --- cycles ---------------------------------------------------------------------------


def import_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component
    of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    raise AssertionError("a strongly connected component without a cycle")


# --- names in code --------------------------------------------------------------------

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    """Words of an identifier or string: split at case humps and anything
    not a letter or digit ("VethBridge", "veth_bridge", "veth-bridge" alike)."""
    return [w.lower() for w in _WORD.findall(text)]


def names_in(text: str, names: tuple[str, ...]) -> set[str]:
    """Which of ``names`` occur in ``text`` as whole words (one name may span
    up to three words: "VhostUser" holds "vhostuser")."""
    wanted = {"".join(words(name)): name for name in names}
    found = set()
    ws = words(text)
    for i in range(len(ws)):
        for j in range(i + 1, min(i + 3, len(ws)) + 1):
            joined = "".join(ws[i:j])
            if joined in wanted:
                found.add(wanted[joined])
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def code_texts(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """(line, what, text) for every identifier and string literal of the
    code; docstrings (and comments, which ast drops) are left out."""
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield line, "string", node.value
        elif isinstance(node, ast.Name):
            yield line, "name", node.id
        elif isinstance(node, ast.Attribute):
            yield line, "attribute", node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield line, "definition", node.name
        elif isinstance(node, ast.arg):
            yield line, "argument", node.arg
        elif isinstance(node, ast.keyword) and node.arg:
            yield line, "keyword", node.arg
        elif isinstance(node, ast.alias):
            yield line, "import", node.asname or node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield line, "import", node.module


# --- the rules ------------------------------------------------------------------------


def test_no_import_cycle() -> None:
    modules = package_modules()
    found = cycles(import_graph(all_imports(), set(modules)))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("room", sorted(FORBIDDEN_IMPORTS))
def test_room_imports_only_what_it_may(room: str) -> None:
    bad = [
        f"{imp.where()}: {imp.module} imports {imp.target}"
        for imp in all_imports()
        if within(imp.module, room)
        and any(within(imp.target, other) for other in FORBIDDEN_IMPORTS[room])
    ]
    assert not bad, f"{room} may not import {', '.join(FORBIDDEN_IMPORTS[room])}:\n" + "\n".join(
        bad
    )


@pytest.mark.parametrize("library", sorted(WRAPPED_LIBRARIES))
def test_wrapped_library_imported_only_by_its_wrappers(library: str) -> None:
    allowed = WRAPPED_LIBRARIES[library]
    bad = [
        f"{imp.where()}: {imp.module} imports {imp.target}"
        for imp in all_imports()
        if within(imp.target, library) and not any(within(imp.module, a) for a in allowed)
    ]
    assert not bad, f"only {', '.join(allowed)} may import {library}:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("what", "names"), [("data-path kind", KIND_NAMES), ("backend", BACKEND_NAMES)]
)
def test_agent_code_names_no_kind_and_no_backend(what: str, names: tuple[str, ...]) -> None:
    bad = []
    for path in sorted((PACKAGE / "agent").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, kind, text in code_texts(tree):
            for name in sorted(names_in(text, names)):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {kind} {text!r} names {name!r}")
    assert not bad, f"podwire/agent names a {what} in code:\n" + "\n".join(sorted(set(bad)))


# --- the reader itself, on small made-up packages -------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_reader_counts_function_level_and_relative_imports_not_type_checking(
    tmp_path: Path,
) -> None:
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from . import a\n",
            "pkg/a.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg import typed\n"
                "else:\n    import pkg.runtime\n"
                "def f():\n    from .sub import deep\n    return deep\n"
                "import importlib\nimportlib.import_module('pkg.dynamic')\n"
            ),
            "pkg/sub/__init__.py": "from .. import a\nfrom .deep import x\n",
            "pkg/sub/deep.py": "x = 1\n",
            "pkg/typed.py": "",
            "pkg/runtime.py": "",
            "pkg/dynamic.py": "",
        },
    )
    edges = {(i.module, i.target) for i in all_imports(package, tmp_path)}
    assert ("pkg", "pkg.a") in edges
    assert ("pkg.a", "pkg.runtime") in edges
    assert ("pkg.a", "pkg.sub.deep") in edges
    assert ("pkg.a", "pkg.dynamic") in edges
    assert ("pkg.sub", "pkg.a") in edges and ("pkg.sub", "pkg.sub.deep") in edges
    assert not any(target == "pkg.typed" for _, target in edges)


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}, "f": {"f"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_names_in_code_match_whole_words_in_any_spelling() -> None:
    assert names_in("VethBridge", KIND_NAMES) == {"veth_bridge"}
    assert names_in("host-veth_ovs-end", KIND_NAMES) == {"veth_ovs"}
    assert names_in("VhostUser", KIND_NAMES) == {"vhostuser"}
    assert names_in("ipvlan_nested", KIND_NAMES) == {"ipvlan"}
    assert names_in("vlan_nested", KIND_NAMES) == {"vlan_nested"}
    assert names_in("OVNBackend", BACKEND_NAMES) == {"ovn"}
    assert names_in("is_ovn", BACKEND_NAMES) == {"ovn"}
    assert names_in("embedded_db_url", BACKEND_NAMES) == {"embedded"}
    assert names_in("government moves", BACKEND_NAMES) == set()
    assert names_in("bridge_name", KIND_NAMES) == set()
    tree = ast.parse('"""veth_bridge in a docstring"""\n# ovn in a comment\nx = "neutron"\n')
    assert [t for _, _, t in code_texts(tree) if names_in(t, BACKEND_NAMES)] == ["neutron"]
