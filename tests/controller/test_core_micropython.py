"""controller/core's portable tests, run again under MicroPython 1.27 (WebAssembly port on
Node.js): the same source files must import and pass there, as on a microcontroller."""

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "micropython" / "run_core_tests.mjs"
PORTABLE = ROOT / "tests" / "controller" / "core"


def portable_tests() -> set[str]:
    """Every test function CPython's pytest collects from the portable directory."""
    names = set()
    for path in sorted(PORTABLE.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(f"{path.stem}::{node.name}")
    return names


@pytest.mark.micropython
def test_core_tests_pass_under_micropython() -> None:
    node = shutil.which("node")
    assert node, "Node.js is required (scripts/bootstrap --dev installs it)"
    assert (ROOT / "node_modules" / "@micropython").is_dir(), (
        "run `npm ci` (scripts/bootstrap --dev)"
    )
    proc = subprocess.run(
        [node, str(RUNNER), str(ROOT)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "MicroPython v1.27" in result["version"]
    assert result["failed"] == []
    expected = portable_tests()
    assert len(expected) >= 40
    assert set(result["passed"]) == expected
