"""The architecture checks of ``tests/test_architecture.py`` have teeth: each rule, run on a small project written
to ``tmp_path``, fails where it should and passes where it should not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_architecture import (
    builtin_task_names,
    import_cycles,
    size_offenders,
    strongly_connected_components,
    task_name_offenders,
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize("files", [
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import pkg.a\n"},
                 id="module-level"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from . import b\n",
                  "pkg/b.py": "def f():\n    from .a import x\n    return x\n"}, id="relative-and-lazy"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import thing\n",
                  "pkg/b.py": "class C:\n    def m(self):\n        from pkg import a\n"}, id="lazy-in-method"),
    pytest.param({"pkg/__init__.py": "from pkg.a import x\n", "pkg/a.py": "from pkg import VERSION\n"},
                 id="explicit-import-of-own-package"),
    pytest.param({"pkg/__init__.py": "", "pkg/sub/__init__.py": "from pkg import c\n", "pkg/sub/deep.py": "",
                  "pkg/c.py": "import pkg.sub.deep\n"}, id="implicit-edge-to-another-package-init"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\n"
                  "else:\n    from pkg import b\n", "pkg/b.py": "from pkg import a\n"}, id="else-of-type-checking"),
    pytest.param({"pkg/__init__.py": "", "other/__init__.py": "", "pkg/a.py": "from other import b\n",
                  "other/b.py": "from pkg.a import x\n"}, id="across-packages"),
])
def test_the_cycle_check_can_fail(tmp_path, files):
    cycles = import_cycles(write(tmp_path, files), ("pkg", "other"))
    assert len(cycles) == 1, cycles
    assert "cycle of" in cycles[0] and " -> " in cycles[0]


@pytest.mark.parametrize("files", [
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import os\n"}, id="acyclic"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "from typing import TYPE_CHECKING\nimport pkg.b\n",
                  "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"},
                 id="type-checking-only"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n",
                  "pkg/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import x\n"},
                 id="typing-dot-type-checking"),
    pytest.param({"pkg/__init__.py": "from pkg.eng.loop import run\n", "pkg/eng/__init__.py": "from .loop import run\n",
                  "pkg/eng/loop.py": "from pkg.eng.optim import step\n", "pkg/eng/optim.py": ""},
                 id="no-implicit-edge-to-own-package"),
    pytest.param({"pkg/__init__.py": "", "pkg/a.py": "import json\nfrom os import path\n"}, id="outside-imports"),
])
def test_the_cycle_check_passes_without_a_cycle(tmp_path, files):
    assert import_cycles(write(tmp_path, files), ("pkg",)) == []


def test_the_cycle_report_names_modules_and_edges(tmp_path):
    root = write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
                            "pkg/b.py": "def f():\n    from pkg.c import y\n", "pkg/c.py": "import pkg.a\n",
                            "pkg/d.py": "import pkg.a\n"})
    [report] = import_cycles(root, ("pkg",))
    assert report.splitlines()[0] == "cycle of 3 modules: pkg.a, pkg.b, pkg.c"
    assert "pkg.a -> pkg.b    pkg/a.py:1: from pkg import b" in report
    assert "pkg.b -> pkg.c    pkg/b.py:2: from pkg.c import y" in report
    assert "pkg.c -> pkg.a    pkg/c.py:1: import pkg.a" in report
    assert "pkg.d" not in report


def test_tarjan_on_a_graph_deeper_than_the_recursion_limit():
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(5000)}
    chain["m5000"] = {"m0"}
    [component] = strongly_connected_components(chain)
    assert len(component) == 5001


def test_the_task_name_check_can_fail(tmp_path):
    root = write(tmp_path, {
        "pkg/tasks/__init__.py": "", "pkg/tasks/detection/__init__.py": "", "pkg/tasks/captioning/__init__.py": "",
        "pkg/tasks/notes/readme.txt": "",  # no __init__.py: not a task
        "pkg/tasks/detection/spec.py": "if task == 'detection':\n    pass\n",  # inside tasks/: allowed
        "pkg/engine.py": ("def f(cfg, task):\n"
                          "    if cfg.task == 'detection':\n"
                          "        return 1\n"
                          "    if task != \"captioning\":\n"
                          "        return 2\n"
                          "    ok = 'notes' == task\n"
                          "    return 'classification' in task or task in ('detection', 'x')\n"),
        "pkg/sub/table.py": "HEADS = {'detection': 1, 'captioning': 2}\nONE = {'detection': 1, 'other': 2}\n",
    })
    assert builtin_task_names(root / "pkg/tasks") == {"captioning", "detection"}
    offenders = task_name_offenders(root / "pkg", root / "pkg/tasks", root)
    assert [o.split(": ")[0] for o in offenders] == [
        "pkg/engine.py:2", "pkg/engine.py:4", "pkg/engine.py:7", "pkg/sub/table.py:1"], offenders
    assert "cfg.task == 'detection'" in offenders[0]
    assert "'captioning', 'detection'" in offenders[3]


def test_the_size_check_can_fail(tmp_path):
    long_body = "".join(f"    x{i} = {i}\n" for i in range(60))
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/big.py": "\n" * 401,
        "pkg/funcs.py": (f"@decorator\n@other\ndef ok():\n{long_body[: -len('    x59 = 59')-1]}\n"  # 60 lines: allowed
                         f"class C:\n    def method(self):\n{long_body.replace('    ', '        ')}"
                         f"async def outer():\n    def inner():\n{long_body.replace('    ', '        ')}"),
    })
    offenders = size_offenders(root, ("pkg",))
    assert offenders == ["pkg/big.py: file of 401 lines (max 400)",
                         "pkg/funcs.py:65: C.method() is 61 lines (max 60)",
                         "pkg/funcs.py:126: outer() is 62 lines (max 60)",
                         "pkg/funcs.py:127: outer.<locals>.inner() is 61 lines (max 60)"], offenders
