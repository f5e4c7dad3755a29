"""Every third-party module the project imports is declared in pyproject.toml (checked with deptry, configured in
``[tool.deptry]``): a package that only happens to be installed here (by hand, or as another package's dependency)
must not be what makes an import work, or a fresh machine fails where this one passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["hf_tasks", "dataset_scripts", "model_cards"]


def deptry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deptry", *args, "--config", str(ROOT / "pyproject.toml"),
                           "--no-ansi"], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_import_of_the_package_tests_and_benchmarks_is_declared():
    result = deptry(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_package_imports_nothing_that_only_the_test_extra_declares():
    result = deptry(*SHIPPED, "--optional-dependencies-dev-groups", "test", "--ignore", "DEP002")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, code", [("tests/helpers.py", "DEP003"), ("hf_tasks/errors.py", "DEP004")])
def test_the_check_fails_on_an_undeclared_import(tmp_path, module, code):
    """The check has teeth: a copy of the project whose test helpers import a package that is installed only as a
    dependency of a dependency (psutil, via accelerate), or whose package imports a test-only package (sklearn)."""
    import shutil

    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", "*venv*", "outputs", "data"))
    target = copy / module
    target.write_text(target.read_text() + ("\nimport psutil\n" if code == "DEP003" else "\nimport sklearn\n"))
    args = ["."] if code == "DEP003" else [*SHIPPED, "--optional-dependencies-dev-groups", "test", "--ignore",
                                            "DEP002"]
    result = subprocess.run([sys.executable, "-m", "deptry", *args, "--no-ansi"], cwd=copy, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and code in result.stdout + result.stderr, result.stdout + result.stderr
