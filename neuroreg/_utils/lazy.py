"""Lazy package faces: a package's public names are imported from their modules on first use.

A package's public names are written once, in its stub ``__init__.pyi`` (one
``from neuroreg.x.y import name as name`` per name, which type checkers read), and its
``__init__.py`` builds the lazy face from that stub (the layout of scikit-image's lazy
loading)::

    _EXPORTS = exports_from_stub(__name__, __file__)
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import ast
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["exports_from_stub", "lazy_exports"]


def exports_from_stub(package: str, init_file: str) -> dict[str, str]:
    """Export map (public name -> module that defines it) of ``package``, read from the ``__init__.pyi`` beside
    ``init_file``, in the stub's order.

    The stub holds ``from neuroreg.<module> import <name> as <name>`` statements (the explicit re-export form of
    typing stubs), plus annotations such as ``__version__: str``, which are not lazy names. A name imported from
    the package itself (``from neuroreg import brain as brain``) is that subpackage.
    """
    stub = Path(init_file).with_suffix(".pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"), filename=str(stub))
    exports: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.AnnAssign, ast.Expr)):   # annotations and the docstring
            continue
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                and node.module.split(".")[0] == "neuroreg"):
            raise ValueError(f"{stub}:{node.lineno}: a package stub holds only 'from neuroreg... import name as "
                             f"name' statements; got {ast.unparse(node)!r}")
        for alias in node.names:
            if alias.asname != alias.name:
                raise ValueError(f"{stub}:{node.lineno}: write '{alias.name} as {alias.name}' (an explicit "
                                 f"re-export); got {ast.unparse(node)!r}")
            if alias.name in exports:
                raise ValueError(f"{stub}:{node.lineno}: {alias.name!r} is exported twice")
            exports[alias.name] = f"{package}.{alias.name}" if node.module == package else node.module
    return exports


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``, whose public ``name`` is defined in
    the module ``exports[name]``; a subpackage or submodule is exported as itself (``"brain": "neuroreg.brain"``).

    A name is imported on first access and then kept in the package's namespace, so importing the
    package alone loads none of its modules (``import neuroreg.data`` does not load Lightning).
    ``__all__`` lists the exported names in the map's order.
    """
    for name, module in exports.items():
        if not isinstance(module, str) or not module.startswith("neuroreg"):
            raise ValueError(f"{package}: export {name!r} must map to a neuroreg module path; got {module!r}")

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(exports[name])
        value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, list(exports)
