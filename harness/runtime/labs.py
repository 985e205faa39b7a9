"""The course's labs as data: each `labs/labNN_topic/lab.toml` says what the lab needs and what a student edits.

`import_file` imports a lab's file by its path (a lab folder is not a package).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.runtime.config import ROOT

LAB_DIR = re.compile(r"^lab(\d{2})_[a-z0-9_]+$")


@dataclass(frozen=True)
class Lab:
    """One lab folder and its manifest."""

    folder: Path
    title: str
    edit: tuple[str, ...]
    services: tuple[str, ...]
    spark: bool

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def number(self) -> int:
        return int(LAB_DIR.match(self.name).group(1))


def _load(folder: Path) -> Lab:
    manifest = folder / "lab.toml"
    try:
        data = tomllib.loads(manifest.read_text())
    except FileNotFoundError:
        raise LookupError(f"{manifest} is missing: every lab declares its services there") from None
    except tomllib.TOMLDecodeError as exc:
        raise LookupError(f"{manifest} is not valid TOML: {exc}") from None
    return Lab(
        folder=folder,
        title=str(data.get("title", folder.name)),
        edit=tuple(data.get("edit", ())),
        services=tuple(data.get("services", ())),
        spark=bool(data.get("spark", False)),
    )


def all_labs(labs_root: Path = ROOT / "labs") -> list[Lab]:
    """Every lab under `labs_root`, in number order."""
    folders = sorted(p for p in labs_root.iterdir() if p.is_dir() and LAB_DIR.match(p.name))
    return [_load(p) for p in folders]


def find_lab(key: str | int, labs_root: Path = ROOT / "labs") -> Lab:
    """The lab named by number (`4`, `04`) or folder name (`lab04_clickhouse`); a clear error otherwise."""
    labs = all_labs(labs_root)
    text = str(key).strip()
    for lab in labs:
        if text == lab.name or (text.isdigit() and int(text) == lab.number):
            return lab
    known = ", ".join(f"lab-{lab.number}" for lab in labs)
    raise LookupError(f"there is no lab {text!r}; the labs are: {known}")


class NotLoadable(ImportError):
    """Python has no loader for the file (it is not Python source)."""


def import_file(path: Path, name: str) -> ModuleType:
    """Import the file `path` as the module `name` (a lab folder is not a package): it is in
    `sys.modules` while it runs, and removed again when its import fails."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NotLoadable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
