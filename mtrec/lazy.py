"""Lazy package exports (PEP 562): a name is imported on first use, so light subprocesses (Ray Data read tasks,
the batch-scoring driver) that touch one small module do not load torch, TorchRec and FBGEMM with the package."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package` whose attribute `name` is `exports[name]`: "module" (the
    attribute of that module with the same name) or "module:" (the module itself). A name that is also a
    subpackage (`mtrec.train`) has the subpackage loaded first and unbound, so that importing its modules later
    cannot rebind the name to the subpackage."""
    namespace = importlib.import_module(package).__dict__
    for name, target in exports.items():
        if not target.endswith(":") and importlib.util.find_spec(f"{package}.{name}") is not None:
            importlib.import_module(f"{package}.{name}")
            namespace.pop(name, None)

    def getattr_(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        value = module if target.endswith(":") else getattr(module, attr or name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
