"""Imports point down the layers (docs/architecture.md): a module imports its own package or a lower layer.

Every import in bot/ counts, including those inside functions and under TYPE_CHECKING: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"

# Top to bottom. A unit is a package (`bot.locks` covers `bot.locks.*`) or a module. Units in one row
# are siblings: neither may import the other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bot.__main__",),
    ("bot.cli",),
    ("bot.demo",),
    ("bot.server",),
    ("bot.slack", "bot.web"),
    ("bot.runtime",),
    ("bot.reports",),
    ("bot.watch",),
    ("bot.unlock",),
    ("bot.audit", "bot.history"),
    ("bot.locks",),
    ("bot.db", "bot.settings", "bot.metrics", "bot.work", "bot.logs"),
    ("bot.durations", "bot.errors", "bot"),
)

# Imports that run up the layers today, each with the issue that removes it. Nothing else may be added.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def unit_of(module: str) -> tuple[int, str]:
    """(layer index, unit) of a bot module: the longest unit that is the module or a package above it."""
    best: tuple[int, str] | None = None
    for index, row in enumerate(LAYERS):
        for unit in row:
            inside = module == unit or (unit != "bot" and module.startswith(unit + "."))  # `bot` is __init__ only
            if inside and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and the picture")
    return best


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[tuple[str, int]]:
    """Every bot module `path` imports, with its line; `from bot.x import y` counts as bot.x.y if that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path, root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bot" or alias.name.startswith("bot."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target != "bot" and not target.startswith("bot."):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                as_path = root.parent.joinpath(*submodule.split("."))
                is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
                yield (submodule if is_module else target), node.lineno


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        importer_layer, importer_unit = unit_of(importer)
        for imported, line in imports_of(path, root):
            imported_layer, imported_unit = unit_of(imported)
            if imported_unit == importer_unit or imported_layer > importer_layer:
                continue
            if (importer, imported) in KNOWN_EXCEPTIONS:
                continue
            where = "a sibling" if imported_layer == importer_layer else "a higher layer"
            found.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {imported} ({where})")
    return found


def test_imports_point_down_the_layers() -> None:
    assert violations(BOT) == []


def test_every_known_exception_is_still_needed() -> None:
    """When the import goes, its exception goes too, so it cannot silently cover a new one."""
    used = {(module_name(path, BOT), imported) for path in BOT.rglob("*.py") for imported, _ in imports_of(path, BOT)}
    assert [pair for pair in KNOWN_EXCEPTIONS if pair not in used] == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "bot"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"locks/model.py": "from bot.slack.views import Message\n", "slack/views.py": ""}, "bot.locks.model imports"),
        ({"locks/model.py": "def f():\n    import bot.unlock.workflow\n", "unlock/workflow.py": ""}, "higher layer"),
        ({"audit/models.py": "from ..watch import models\n", "watch/models.py": ""}, "bot.watch.models"),
        ({"web.py": "from bot.slack import app\n", "slack/app.py": ""}, "a sibling"),
        ({"locks/model.py": "from bot import settings\n", "settings.py": "import bot.cli\n", "cli.py": ""}, "bot.cli"),
        ({"locks/model.py": "", "newcomer.py": "from bot.locks import model\n"}, "in no layer"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    try:
        found = violations(_tree(tmp_path, files))
    except AssertionError as unplaced:  # a module no layer names is an error too
        found = [str(unplaced)]
    assert len(found) == 1 and expected in found[0], found


def test_downward_and_own_package_imports_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "slack/views.py": "from bot.locks.model import X\nfrom bot.slack import ids\n",
            "slack/ids.py": "",
            "locks/model.py": "from bot.errors import BadInput\nfrom . import address\n",
            "locks/address.py": "",
            "errors.py": "",
        },
    )
    assert violations(root) == []
