"""Load modules of the released ``harmonization`` wheel without running its package ``__init__`` files.

The released package's top-level ``__init__`` imports every submodule (and so Xplique, OpenCV,
...); the reference scripts need only a few modules. :func:`load_from_wheel` reads the named files
from the wheel, registers each parent package as an empty namespace (unless its ``__init__.py`` is
itself named), and executes the files in the order given, as the package would import them.
"""

from __future__ import annotations

import sys
import types
import zipfile
from pathlib import Path
from typing import Sequence

__all__ = ["load_from_wheel"]


def _dotted(path: str) -> str:
    """``a/b/c.py`` -> ``a.b.c``; ``a/b/__init__.py`` -> ``a.b``."""
    name = path[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def load_from_wheel(wheel: Path, sources: Sequence[str]) -> types.ModuleType:
    """Execute ``sources`` (file paths inside ``wheel``, in import order); return the last module."""
    with zipfile.ZipFile(wheel) as zf:
        texts = {path: zf.read(path).decode() for path in sources}
    packages = {".".join(_dotted(p).split(".")[:i]) for p in sources for i in range(1, _dotted(p).count(".") + 1)}
    for pkg in sorted(packages):
        module = types.ModuleType(pkg)
        module.__path__ = []
        sys.modules[pkg] = module
    loaded = None
    for path in sources:
        dotted, is_package = _dotted(path), path.endswith("/__init__.py")
        module = sys.modules[dotted] if is_package else types.ModuleType(dotted)
        module.__package__ = dotted if is_package else dotted.rpartition(".")[0]
        module.__file__ = f"{wheel}!{path}"
        sys.modules[dotted] = module
        exec(compile(texts[path], module.__file__, "exec"), module.__dict__)
        loaded = module
    if loaded is None:
        raise ValueError("sources is empty: name at least one file of the wheel")
    return loaded
