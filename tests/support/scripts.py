"""Loading a script of ``benchmarks/`` (not a package) as a module, for its pure parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/{name}.py`` as a module (its ``main`` is not run)."""
    module_name = f"benchmarks_{name}"  # not a name any installed module could have
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: dataclasses look their module up while defined.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
