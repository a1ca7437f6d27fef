"""A script of the repository (not part of a package) imported by its path, for the tests that check it."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator


@contextmanager
def module_at(name: str, path: Path) -> Iterator[ModuleType]:
    """The file at ``path`` imported as module ``name`` for the duration (scripts that import their siblings find
    themselves in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
