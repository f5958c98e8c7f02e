"""The rules the functional core keeps (docs/architecture.md): it imports nothing from the
shell, reads no files of its own, its texts name no organisation, and each module stays
readable.

Checked on the source of every module under bridge/core/, so a module added by a later split
is checked too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bridge.core

CORE = Path(bridge.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))
# The one place the core may name a file-system loader: Renderer's default when no loader is
# given (tests, benches, scripts); the daemon passes the shell's (bridge/templates.py).
LOADER_DEFAULT = CORE / "render" / "renderer.py"
FILE_ACCESS = ("open(", "read_text(", "read_bytes(", "write_text(", "write_bytes(", ".is_file(",
               ".is_dir(", ".exists(", ".glob(", "os.path", "os.walk", "os.listdir", "shutil")


def _rel(path: Path) -> str:
    return str(path.relative_to(CORE.parent.parent))


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not node.level:
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return out


def test_every_core_module_is_checked() -> None:
    names = {_rel(p) for p in MODULES}
    for expected in ("bridge/core/dates.py", "bridge/core/labels.py", "bridge/core/report.py",
                     "bridge/core/mail.py", "bridge/core/render/renderer.py",
                     "bridge/core/render/sandbox.py"):
        assert expected in names


def test_core_imports_nothing_from_the_shell_and_no_asyncio() -> None:
    bad = [f"{_rel(p)}:{line}: {name}" for p in MODULES for line, name in _imports(p)
           if name.split(".")[0] == "asyncio"
           or (name.split(".")[0] == "bridge" and not (name == "bridge.core"
                                                       or name.startswith("bridge.core.")))]
    assert bad == []


def test_mail_reads_dates_without_the_report_reader() -> None:
    # The data flow is mail -> report: the mail reader takes its date parser from dates.py.
    names = {name for _, name in _imports(CORE / "mail.py")}
    assert "bridge.core.dates" in names and "bridge.core.report" not in names


def test_core_reads_no_files() -> None:
    bad = []
    for path in MODULES:
        source = path.read_text(encoding="utf-8")
        bad += [f"{_rel(path)}: {call}" for call in FILE_ACCESS if call in source]
        if "FileSystemLoader" in source and path != LOADER_DEFAULT:
            bad.append(f"{_rel(path)}: FileSystemLoader")
    assert bad == []


def test_core_modules_stay_readable() -> None:
    long = [f"{_rel(p)}: {n} lines" for p in MODULES
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700]
    assert long == []


def test_render_names_no_organisation() -> None:
    # The name, address and number of the organisation come from the config.
    named = [_rel(p) for p in sorted((CORE / "render").glob("*.py"))
             if "CBG" in p.read_text(encoding="utf-8")]
    assert named == []
