"""Lazy package faces read their names from the stub ``__init__.pyi``: what the stub may hold."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from neuroreg._utils.lazy import exports_from_stub

_PACKAGE_ROOT = Path(importlib.import_module("neuroreg").__file__).parent


def _stub(tmp_path: Path, text: str) -> str:
    (tmp_path / "__init__.pyi").write_text(text)
    return str(tmp_path / "__init__.py")


def test_stub_gives_names_in_order_and_subpackages_as_modules(tmp_path):
    init = _stub(tmp_path, '"""doc"""\n__version__: str\nfrom neuroreg.a.b import z as z, y as y\n'
                           "from neuroreg import sub as sub\n")
    assert exports_from_stub("neuroreg", init) == {"z": "neuroreg.a.b", "y": "neuroreg.a.b", "sub": "neuroreg.sub"}


@pytest.mark.parametrize("text, words", [
    ("from neuroreg.a import x\n", "x as x"),
    ("from neuroreg.a import x as y\n", "x as x"),
    ("import neuroreg.a\n", "only 'from neuroreg"),
    ("from numpy import x as x\n", "only 'from neuroreg"),
    ("from neuroreg.a import x as x\nfrom neuroreg.b import x as x\n", "exported twice"),
])
def test_stub_refuses_what_is_not_an_explicit_reexport(tmp_path, text, words):
    with pytest.raises(ValueError, match=words):
        exports_from_stub("neuroreg.pkg", _stub(tmp_path, text))


@pytest.mark.parametrize("stub", sorted(_PACKAGE_ROOT.rglob("__init__.pyi")), ids=lambda p: str(p.parent.name))
def test_every_stub_name_is_defined_where_the_stub_says(stub):
    """Each ``from M import n as n`` of a shipped stub names a module that defines ``n`` (or the subpackage)."""
    tree = ast.parse(stub.read_text())
    names = [(node.module, a.name) for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names]
    assert names
    for module, name in names:
        assert hasattr(importlib.import_module(module), name) or importlib.import_module(f"{module}.{name}")
