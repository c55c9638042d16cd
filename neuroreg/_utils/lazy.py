"""Lazy package faces: a package's public names are imported from their modules on first use.

A package face is its ``__init__.py``: an export map (public name -> the module that
defines it), the same names under ``if TYPE_CHECKING:`` for type checkers, and one line::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


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
