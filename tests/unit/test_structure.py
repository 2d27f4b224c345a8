"""The code's structure holds: one home for run-dir file names, and a console that stays light to import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from medtune import run_dir

SRC = Path(run_dir.__file__).parent


def _file_names() -> dict[str, str]:
    """run_dir's file and folder names that cannot be mistaken for a plain word: they hold a '.' or a '/'."""
    return {
        name: value
        for name, value in vars(run_dir).items()
        if name.isupper() and isinstance(value, str) and ("." in value or "/" in value) and "{" not in value
    }


def _docstring_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            nodes.add(id(first.value))
    return nodes


def test_no_run_dir_file_name_literal_outside_run_dir():
    names = _file_names()
    assert {"RESULTS_FILE", "STATUS_FILE", "METRICS_LOG", "BASE_EVAL_SUBDIR"} <= names.keys()
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, names.values())) + r")(?![\w.-])")
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "run_dir.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(SRC)}:{node.lineno}: {m}" for m in pattern.findall(node.value)]
    assert not found, "\n".join(found)


def test_the_console_summary_imports_neither_torch_nor_wandb_nor_matplotlib():
    code = (
        "import sys; from medtune import console; console._accuracy_line({}, __import__('pathlib').Path('.'), 'x'); "
        "print(sorted(m for m in ('torch', 'wandb', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_each_package_init_names_its_modules():
    for package in sorted(p.parent for p in SRC.rglob("__init__.py") if p.parent != SRC):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        modules = {p.stem for p in package.glob("*.py")} - {"__init__", "__main__"}
        missing = sorted(m for m in modules if not re.search(rf"\b{m}\b", doc))
        assert not missing, f"{package.relative_to(SRC)}/__init__.py does not name {missing}"


def test_the_readme_layout_names_every_module_and_package():
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    names = {p.name for p in SRC.glob("*.py") if p.name != "__init__.py"} | {
        f"{p.parent.name}/" for p in SRC.glob("*/__init__.py")
    }
    missing = sorted(name for name in names if name not in layout)
    assert not missing, f"README's Layout lacks {missing}"
