"""The layout's rules: the core package never imports torch, and no job imports another job."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_core_package_never_imports_torch() -> None:
    probe = (
        "import importlib, pkgutil, sys, lakelens\n"
        "for m in pkgutil.walk_packages(lakelens.__path__, 'lakelens.'): importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'udfs', 'models', 'stages', 'jobs')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_no_job_imports_another_and_nothing_imports_jobs() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "jobs")
        for folder in ("jobs", "stages", "udfs", "models", "lakelens", "bench")
        for path in (REPO / folder).rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}
