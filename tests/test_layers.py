"""The packages' arrows point one way, down:

    trainyard (CLI, gunicorn launcher, client)  ->  service.api, worker
    service.api, worker                         ->  service.store, service.shared
    everything                                  ->  nncore (which imports nothing of ours)

Read from the source with ``ast`` rather than by importing it: an import inside a
function (the CLI defers most of them) counts as much as one at the top, and nothing
has to be installed or importable for the check to run.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nncore", "service", "worker", "trainyard")

#: (importer, imported): a module under the first prefix may not import one under the second
FORBIDDEN = [
    ("nncore", "service"), ("nncore", "worker"), ("nncore", "trainyard"),
    ("service", "worker"), ("service", "trainyard"),
    ("worker", "service.api"), ("worker", "trainyard"),
    ("service.store", "service.api"), ("service.shared", "service.api"),
]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved.
    ``from a import b`` yields ``a`` and ``a.b`` too (b may be a submodule)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            yield node.lineno, node.args[0].value


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def backward_arrows(paths: list[Path], root: Path = ROOT) -> list[str]:
    # one line per import statement and rule, naming the most precise module it reaches
    found: dict[tuple[str, int, str, str], str] = {}
    for path in paths:
        where = str(path.relative_to(root))
        importer = module_name(path, root)
        for line, imported in imports(path, root):
            for low, high in FORBIDDEN:
                if _under(importer, low) and _under(imported, high):
                    key = (where, line, low, high)
                    found[key] = max(found.get(key, ""), imported, key=len)
                    break
    return [f"{module_name(root / where, root)} imports {imported} ({where}:{line}): {low} must not depend on {high}"
            for (where, line, low, high), imported in sorted(found.items())]

def test_every_package_is_walked():
    names = {module_name(p) for p in sources()}
    for expected in ("nncore.distributed", "service.api", "service.store.lifecycle", "service.shared.settings",
                     "service.shared.queue", "worker.launch", "worker.runner", "trainyard", "trainyard.cli.serve",
                     "trainyard.server", "trainyard.client"):
        assert expected in names


def test_no_arrow_points_back_up():
    bad = backward_arrows(sources())
    assert not bad, "imports that point back up the layers:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("service/store/x.py", "from ..api import create_app\n", "service.store.x imports service.api"),
    ("service/shared/x.py", "def f():\n    from service.api.jobs import bp\n",
     "service.shared.x imports service.api.jobs"),
    ("service/store/x.py", "from .. import api\n", "service.store.x imports service.api"),
    ("worker/x.py", "import trainyard.cli\n", "worker.x imports trainyard.cli"),
    ("nncore/__init__.py", "from worker import launch\n", "nncore imports worker"),
])
def test_a_backward_import_is_caught(tmp_path, module, source, expected):
    # laid out as in the tree, so its relative imports resolve as they would there
    path = tmp_path / module
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = backward_arrows([path], tmp_path)
    assert any(line.startswith(expected) for line in found), found


def test_arrows_down_are_allowed(tmp_path):
    path = tmp_path / "trainyard" / "cli" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text("from service.api import create_app\nfrom worker.launch import launch\n"
                    "from ..client import Client\nfrom service.shared.queue import QUEUE\n")
    assert backward_arrows([path], tmp_path) == []
