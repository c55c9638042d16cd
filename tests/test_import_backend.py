"""Importing neuroreg never switches matplotlib's backend (a Jupyter user's inline plots must keep working)."""

import json
import os
import subprocess
import sys
from pathlib import Path


import neuroreg

ROOT = Path(neuroreg.__file__).resolve().parent.parent

_SCRIPT = r"""
import importlib, json, pkgutil, sys
import matplotlib
matplotlib.use("svg")
callers = set()
_use = matplotlib.use
def spy(*args, **kwargs):
    callers.add(sys._getframe(1).f_code.co_filename)
    return _use(*args, **kwargs)
matplotlib.use = spy
import neuroreg
failed = {}
names = ["neuroreg"] + [m.name for m in pkgutil.walk_packages(neuroreg.__path__, "neuroreg.")
                        if not m.name.endswith("__main__")]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps({"backend": matplotlib.get_backend(), "callers": sorted(callers), "failed": failed,
                  "n_modules": len(names)}))
"""


def test_importing_every_module_keeps_the_backend():
    env = dict(os.environ, MPLBACKEND="svg", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["failed"] == {} and res["n_modules"] > 50
    offenders = {Path(c).resolve().relative_to(ROOT).as_posix() if Path(c).resolve().is_relative_to(ROOT) else c
                 for c in res["callers"]}
    assert not offenders, f"modules that switch the backend on import: {sorted(offenders)}"
    assert res["backend"] == "svg"
