"""Architecture tests: the core's import graph and what plugins may import.

The import graph is built from the source with :mod:`ast` (nothing is imported),
so it also covers modules that are being turned into packages: every ``.py``
file under ``core/mcp_imagegen`` is a module, ``__init__.py`` is its package,
and relative imports are resolved against the importing module's package.

Rules checked:

* **No import cycle among core modules.** Only imports that run when a module is
  imported count: module level, including ``try``/``if`` blocks and class bodies.
  Two kinds are excluded and the failure message says so:

  - imports under ``if TYPE_CHECKING:`` never run, so they cannot break an
    import; they are held to the stricter public-types rule below instead;
  - imports inside functions are lazy (``_cli`` imports the server only for
    ``serve``, to keep the other commands fast); they run after every module
    has finished importing. A cycle they close is listed in the failure
    message for context, but does not fail the test by itself.

  The implicit import of a parent package (``import mcp_imagegen._config``
  first runs ``mcp_imagegen/__init__.py``) is not an edge: every submodule would
  otherwise be in a cycle with the package face that re-exports it. An explicit
  ``from mcp_imagegen import __version__`` is an edge to the face.

* **The public contract names only public modules.** ``errors``, ``hookspecs``,
  ``imaging``, ``interfaces`` and ``models`` import no private core module, not
  even under ``TYPE_CHECKING``: a plugin author reading a hook specification
  must not meet a type they cannot import. The package face and ``testing``
  may re-export private implementations (as pytest's face does with
  ``_pytest``).

* **Plugins import only the public modules.** The built-in plugins
  (``plugins/*``) and the example plugin (``examples/mcp-imagegen-border``)
  import nothing of ``mcp_imagegen`` but :data:`PUBLIC_MODULES`, and no other
  plugin package. Every import counts here, lazy and ``TYPE_CHECKING`` ones too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core" / "mcp_imagegen"
CORE_PACKAGE = "mcp_imagegen"

#: The modules a plugin may import: the package face and the public modules.
#: Everything else in the core has a leading underscore and may change freely.
PUBLIC_MODULES = frozenset(
    {
        "mcp_imagegen",
        "mcp_imagegen.errors",
        "mcp_imagegen.hookspecs",
        "mcp_imagegen.imaging",
        "mcp_imagegen.interfaces",
        "mcp_imagegen.models",
        "mcp_imagegen.testing",
    }
)
#: Public modules that define the plugin contract and so name only public types.
CONTRACT_MODULES = PUBLIC_MODULES - {"mcp_imagegen", "mcp_imagegen.testing"}

#: Each plugin distribution's package folder, by package name.
PLUGIN_PACKAGES = {
    path.name: path for path in sorted((ROOT / "plugins").glob("mcp_imagegen_*"))
} | {"mcp_imagegen_border": ROOT / "examples/mcp-imagegen-border/mcp_imagegen_border"}

#: Known violations, each (importing module, imported module). An entry that no
#: longer occurs fails the test, so the list only shrinks. Empty: hookspecs names
#: the public ``ImageServiceAPI`` Protocol, not the concrete service.
KNOWN_CONTRACT_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

When = Literal["eager", "type_checking", "lazy"]


@dataclass(frozen=True)
class Import:
    """One imported module, as written in one file.

    Attributes:
        importer: The importing module's dotted name.
        target: The imported module's dotted name (absolute).
        names: For ``from target import a, b``: the imported names.
        when: ``eager`` (runs at import), ``type_checking`` or ``lazy``.
        where: ``path:line`` of the statement, for failure messages.
    """

    importer: str
    target: str
    names: tuple[str, ...]
    when: When
    where: str


def module_name(path: Path, package_dir: Path, package: str) -> str:
    """Dotted name of the module in ``path``, inside ``package`` at ``package_dir``."""
    parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    nodes: Iterable[ast.stmt], when: When
) -> Iterator[tuple[ast.Import | ast.ImportFrom, When]]:
    """Yield every import statement with when it runs."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, when
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, "lazy")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, "lazy" if when == "lazy" else "type_checking")
            yield from _walk(node.orelse, when)
        else:
            # Class bodies, try/with/if/for blocks run with their enclosing code.
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [
                        child
                        for item in children
                        for child in (
                            item.body
                            if isinstance(item, ast.ExceptHandler | ast.match_case)
                            else [item]
                        )
                    ]
                    yield from _walk(stmts, when)


def imports_of(path: Path, package_dir: Path, package: str) -> list[Import]:
    """Every import in ``path``, relative ones resolved to absolute names."""
    importer = module_name(path, package_dir, package)
    # A relative import is relative to the importer's package; an __init__ is
    # its own package.
    own_package = (
        importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    )
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node, when in _walk(tree.body, "eager"):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        where = f"{shown}:{node.lineno}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(importer, alias.name, (), when, where))
            continue
        if node.level:
            base = own_package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        names = tuple(alias.name for alias in node.names)
        found.append(Import(importer, target, names, when, where))
    return found


def package_imports(package_dir: Path, package: str) -> list[Import]:
    """Every import of every module in a package folder (subpackages included)."""
    return [
        imp
        for path in sorted(package_dir.rglob("*.py"))
        for imp in imports_of(path, package_dir, package)
    ]


def import_graph(
    imports: Iterable[Import], modules: set[str], when: set[When]
) -> dict[str, dict[str, str]]:
    """Edges importer → imported module (among ``modules``), with where each is.

    ``from pkg import sub`` is an edge to ``pkg.sub`` when that is a module, and
    to ``pkg`` otherwise; parent packages imported implicitly are not edges.
    """
    graph: dict[str, dict[str, str]] = {module: {} for module in modules}
    for imp in imports:
        if imp.when not in when:
            continue
        targets = [
            f"{imp.target}.{name}" if f"{imp.target}.{name}" in modules else imp.target
            for name in imp.names
        ] or [imp.target]
        for target in targets:
            if target in modules and target != imp.importer:
                graph[imp.importer].setdefault(target, imp.where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], graph: dict[str, dict[str, str]]) -> str:
    """The edges inside one cycle, one per line, with where each import is."""
    members = set(component)
    return "\n".join(
        f"  {importer} -> {target}  ({where})"
        for importer in component
        for target, where in sorted(graph[importer].items())
        if target in members
    )


def core_modules(package_dir: Path, package: str) -> set[str]:
    """Every module and package name in a package folder."""
    return {module_name(p, package_dir, package) for p in package_dir.rglob("*.py")}


def cycle_report(package_dir: Path, package: str) -> str:
    """Empty when the package's eager imports have no cycle, else what to fix."""
    imports = package_imports(package_dir, package)
    modules = core_modules(package_dir, package)
    eager = import_graph(imports, modules, {"eager"})
    found = cycles(eager)
    if not found:
        return ""
    lines = ["Import cycles among modules (module-level imports):"]
    for component in found:
        lines += [f"- {' / '.join(component)}", describe(component, eager)]
    with_lazy = import_graph(imports, modules, {"eager", "lazy", "type_checking"})
    extra = [c for c in cycles(with_lazy) if c not in found]
    if extra:
        lines.append(
            "Also closed by imports inside functions or under TYPE_CHECKING "
            "(allowed on their own, listed for context):"
        )
        for component in extra:
            lines += [f"- {' / '.join(component)}", describe(component, with_lazy)]
    lines.append(
        "Break a cycle by moving the shared part into a lower module, or by "
        "importing under TYPE_CHECKING when only types are needed."
    )
    return "\n".join(lines)


# -- the checks ------------------------------------------------------------------


def test_core_modules_have_no_import_cycle() -> None:
    report = cycle_report(CORE, CORE_PACKAGE)
    assert not report, report


def test_contract_modules_name_only_public_modules() -> None:
    modules = core_modules(CORE, CORE_PACKAGE)
    graph = import_graph(
        package_imports(CORE, CORE_PACKAGE),
        modules,
        {"eager", "type_checking", "lazy"},
    )
    found = {
        (importer, target): where
        for importer in sorted(CONTRACT_MODULES)
        for target, where in graph[importer].items()
        if target not in PUBLIC_MODULES
    }
    unexpected = dict(found)
    for edge in KNOWN_CONTRACT_VIOLATIONS:
        unexpected.pop(edge, None)
    stale = KNOWN_CONTRACT_VIOLATIONS - found.keys()
    assert not unexpected, (
        "Public contract modules import private core modules (a plugin author "
        "could not import these types):\n"
        + "\n".join(f"  {a} -> {b}  ({where})" for (a, b), where in unexpected.items())
        + "\nMove the type into a public module, or name a public Protocol."
    )
    assert not stale, (
        f"Fixed, so remove from KNOWN_CONTRACT_VIOLATIONS in {__file__}: "
        f"{sorted(stale)}"
    )


def plugin_violations(package: str, package_dir: Path) -> list[str]:
    """What a plugin package imports that it must not, one line per import."""
    others = PLUGIN_PACKAGES.keys() - {package}
    problems = []
    for imp in package_imports(package_dir, package):
        top = imp.target.split(".")[0]
        if top in others:
            problems.append(f"  {imp.where}: imports {imp.target}, another plugin")
        elif top != CORE_PACKAGE:
            continue
        elif imp.target not in PUBLIC_MODULES:
            problems.append(f"  {imp.where}: imports {imp.target}, a private module")
        elif imp.target == CORE_PACKAGE:
            # `from mcp_imagegen import _config` reaches past the face too.
            problems += [
                f"  {imp.where}: imports {imp.target}.{name}, a private module"
                for name in imp.names
                if name.startswith("_") and not name.startswith("__")
            ]
    return problems


@pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES))
def test_plugin_imports_only_public_modules(package: str) -> None:
    problems = plugin_violations(package, PLUGIN_PACKAGES[package])
    assert not problems, (
        f"{package} imports outside the public API:\n"
        + "\n".join(problems)
        + f"\nPlugins may import only {', '.join(sorted(PUBLIC_MODULES))} "
        "(see docs/architecture.md), and never another plugin."
    )


# -- the checker itself, on small packages written for the purpose -------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_cycle_through_a_subpackage_and_relative_imports(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "__init__.py": "from pkg.a import A\n",
            "a.py": "from ._svc import pipeline\nA = 1\n",
            "_svc/__init__.py": "",
            "_svc/pipeline.py": "try:\n    from .. import a\n"
            "except ImportError:\n    pass\n",
            "b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg import c\n",
            "c.py": "def f():\n    from pkg import b\n",
        },
    )
    report = cycle_report(tmp_path, "pkg")
    assert "- pkg._svc.pipeline / pkg.a\n" in report
    assert "pkg._svc.pipeline -> pkg.a  (" in report
    # b <-> c is closed only by a TYPE_CHECKING and a lazy import: context only.
    assert report.index("- pkg.b / pkg.c") > report.index("Also closed by")


def test_checker_accepts_type_checking_and_lazy_back_edges(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "__init__.py": "from pkg.a import A\n",
            "a.py": "import pkg.b\nA = 1\n",
            "b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.a import A\n"
            "def f():\n    from . import a\n",
        },
    )
    assert cycle_report(tmp_path, "pkg") == ""


def test_checker_reports_private_and_cross_plugin_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "__init__.py": "",
            "plugin.py": "from mcp_imagegen import hookimpl, _config\n"
            "from mcp_imagegen.imaging import open_image\n"
            "from mcp_imagegen_file.storage import FileStorage\n"
            "from .settings import X\n",
            "settings.py": "def f():\n    from mcp_imagegen._service import S\n",
        },
    )
    problems = "\n".join(plugin_violations("mcp_imagegen_border", tmp_path))
    assert "plugin.py:1: imports mcp_imagegen._config, a private" in problems
    assert "plugin.py:3: imports mcp_imagegen_file.storage, another plugin" in problems
    assert "settings.py:2: imports mcp_imagegen._service, a private" in problems
    assert "imaging" not in problems and "hookimpl" not in problems
    assert problems.count("\n") == 2


# -- size and import weight (issue 9) -------------------------------------------

#: The plugin manager loads, validates and calls plugins; anything else (the
#: introspection behind ``mcp-imagegen plugins``, ...) lives beside it.
MAX_PLUGIN_MANAGER_LINES = 250


def test_the_plugin_manager_stays_small() -> None:
    tree = ast.parse((CORE / "_plugins.py").read_text())
    [manager] = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == "PluginManager"
    ]
    assert manager.end_lineno is not None
    lines = manager.end_lineno - manager.lineno + 1

    assert lines <= MAX_PLUGIN_MANAGER_LINES, (
        f"PluginManager has {lines} lines; move what is not the manager's job "
        "into its own functions or module."
    )


def test_importing_the_package_face_loads_no_configuration() -> None:
    # Every plugin imports the face; pydantic-settings (and the whole config
    # module) is the core's business, not a plugin import's.
    code = (
        "import sys, mcp_imagegen; "
        "print(sorted(m for m in ('mcp_imagegen._config', 'pydantic_settings') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]", result.stdout
