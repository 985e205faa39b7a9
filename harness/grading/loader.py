"""Import the code under test by file path, for the chosen target (labs/, solutions/ or a copy)."""

from __future__ import annotations

import hashlib
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.runtime.config import ROOT
from harness.runtime.labs import NotLoadable, import_file

TARGETS = ("labs", "solutions")


@dataclass(frozen=True)
class Target:
    """Which implementation the graded suites import: `labs`, `solutions`, or another labs/ copy."""

    name: str = "labs"
    labs_dir: Path | None = None
    base: Path = ROOT  # the course repository holding labs/ and solutions/

    @property
    def root(self) -> Path:
        if self.name == "solutions":
            return self.base / "solutions"
        return self.labs_dir if self.labs_dir is not None else self.base / "labs"


class LabImportError(Exception):
    """A lab's module could not be imported; every test of that lab fails with this message."""


_target = Target()
# (target root, lab, module) -> the imported module, or the message of the import failure.
_cache: dict[tuple[str, str, str], ModuleType | str] = {}


def set_target(name: str = "labs", labs_dir: str | Path | None = None, base: Path = ROOT) -> Target:
    """Choose the implementation `lab_module` imports; clears the import cache."""
    global _target
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {name!r}")
    if labs_dir is not None and name != "labs":
        raise ValueError("--labs-dir only applies to --target labs")
    _target = Target(name, Path(labs_dir).resolve() if labs_dir is not None else None, base)
    _cache.clear()
    return _target


def current_target() -> Target:
    """The target chosen for this run."""
    return _target


def target_dir() -> Path:
    """The folder holding `<lab>/<module>.py` for the current target."""
    return _target.root


def lab_title(lab: str) -> str:
    """`lab01_batch` -> `Lab 01`."""
    match = re.match(r"lab(\d+)", lab)
    return f"Lab {match.group(1)}" if match else lab


def display_path(path: Path) -> str:
    """A path relative to the repository when it lies inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def module_display_path(path: Path) -> str:
    """How to name a lab file to its author: repository-relative, or relative to the copy's parent."""
    for base in (_target.base, _target.root.parent):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


def lab_module(lab: str, module: str) -> ModuleType:
    """Import `<target>/<lab>/<module>.py` by path under a unique module name.

    The result (or the failure) is cached per (target, lab, module). A module that does not import
    raises `LabImportError` naming the file and the line, so only that lab's tests fail.
    """
    root = _target.root
    key = (str(root), lab, module)
    cached = _cache.get(key)
    if isinstance(cached, ModuleType):
        return cached
    if isinstance(cached, str):
        raise LabImportError(cached)
    path = root / lab / f"{module}.py"
    try:
        loaded = _import_path(path, _module_name(root, lab, module))
    except LabImportError as exc:
        _cache[key] = str(exc)
        raise
    _cache[key] = loaded
    return loaded


def _module_name(root: Path, lab: str, module: str) -> str:
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return f"_graded_{_target.name}_{digest}_{lab}_{module}"


def _import_path(path: Path, name: str) -> ModuleType:
    prefix = f"{lab_title(path.parent.name)}: could not import {module_display_path(path)}"
    if not path.is_file():
        raise LabImportError(
            f"{prefix}: the file does not exist (every test of this lab needs it: restore it "
            f"under its original name)"
        )
    try:
        module = import_file(path, name)
    except NotLoadable:
        raise LabImportError(f"{prefix}: Python cannot load this file.") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even SystemExit
        raise LabImportError(f"{prefix}{_describe(exc, path)}") from None
    _pickle_by_value(module)
    return module


def _describe(exc: BaseException, path: Path) -> str:
    """`: line 42: NameError: …` plus the offending source line, for an exception at import."""
    lineno: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path:
        lineno = exc.lineno
        what = f"{type(exc).__name__}: {exc.msg}"
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(path):
                lineno = frame.lineno
        what = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if type(exc).__name__ == "Failed" and "Timeout" in what:
            what = "importing it did not finish in time (an endless loop at the top level?)"
        elif isinstance(exc, SystemExit):
            what = "the file calls exit() / sys.exit() while being imported"
    location = f": line {lineno}" if lineno else ""
    text = f"{location}: {what}"
    if lineno:
        lines = path.read_text(errors="replace").splitlines()
        if 0 < lineno <= len(lines):
            text += f"\n    {lineno} | {lines[lineno - 1].rstrip()}"
    return (
        text + "\nFix this first: every test of this lab needs the file to import without errors."
    )


def _pickle_by_value(module: ModuleType) -> None:
    """Let Spark ship this module's functions to Python workers (its name is not importable)."""
    if "pyspark" not in sys.modules:
        return
    try:
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except (ImportError, AttributeError, ValueError):
        pass
