"""The README's Python code runs as written (extracted block by block, one namespace, in a scratch folder)."""

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_python_blocks():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3 and any("nr.evaluate(" in b for b in blocks)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matplotlib.use("Agg")
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks(README.read_text(encoding="utf-8"))):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block that drifted from the code
            pytest.fail(f"README python block {i + 1} fails: {type(exc).__name__}: {exc}\n{block}")
    assert (tmp_path / "results" / "readme_example" / "report.html").is_file()
