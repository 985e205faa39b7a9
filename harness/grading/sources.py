"""Submissions in: one entry per student under `SUBMISSIONS=dir`, whatever its layout.

Each entry is a folder, a git repository (graded at HEAD, or at `--tag`: a tag, a commit, or a
deadline date for the last commit before it) or a .zip. Folders and zips may be laid out as
- `make submit`'s submission.zip: `manifest.json` (lab, file, sha256) and `labs/<lab>/<file>`;
- a repository (GitHub Classroom's "Download ZIP" puts it in one top folder `<repo>-<branch>/`);
- Gradescope's upload: the edited files themselves at the top (`clickhouse_lab.py`), or the
  contents of submission.zip.
Anything else is reported for that student with the reason; the others still grade.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
LAB_DIR = re.compile(r"^lab\d{2}_[a-z0-9_]+$")


@dataclass
class Submission:
    """One student's work, as a labs/ folder (`labs` is None when it could not be read)."""

    student: str
    labs: Path | None
    kind: str
    problem: str = ""


def collect(
    submissions: Path, scratch: Path, edit: dict[str, tuple[str, ...]], tag: str | None = None
) -> list[Submission]:
    """Every student entry under `submissions`, unpacked under `scratch` when needed.

    `edit`: lab -> the files a student edits (from each lab's lab.toml).
    """
    out = []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        student = entry.name.removesuffix(".zip")
        work = scratch / student
        try:
            out.append(_one(entry, student, work, edit, tag))
        except (OSError, ValueError, zipfile.BadZipFile, subprocess.CalledProcessError) as exc:
            out.append(
                Submission(student, None, "unreadable", f"could not read {entry.name}: {exc}")
            )
    return out


def _one(
    entry: Path, student: str, work: Path, edit: dict[str, tuple[str, ...]], tag: str | None
) -> Submission:
    if entry.is_dir() and (entry / ".git").exists():
        rev = _revision(entry, tag)
        work.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(entry), "archive", "--format=tar", rev],
            capture_output=True,
            check=True,
        ).stdout
        tar_path = work.with_suffix(".tar")
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(work, filter="data")
        tar_path.unlink()
        return _layout(student, work, work, "git", edit, f"git {rev[:12]}")
    if entry.is_dir():
        return _layout(student, entry, work, "folder", edit, "folder")
    if entry.suffix == ".zip" and entry.is_file():
        _unzip(entry, work)
        return _layout(student, work, work, "zip", edit, "zip")
    return Submission(
        student, None, "unknown", f"{entry.name} is not a folder, a git repository or a .zip"
    )


def _revision(repo: Path, tag: str | None) -> str:
    """The commit to grade: HEAD, the tag/commit `tag`, or the last commit before date `tag`."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    if not tag:
        rev = git("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    else:
        rev = git("rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}")
        if not rev:
            rev = git("rev-list", "-1", f"--before={tag}", "HEAD")
    if not rev:
        what = f"no commit for {tag!r} (not a tag, a commit or a date)" if tag else "no commits"
        raise ValueError(f"git repository with {what}")
    return rev


def _unzip(path: Path, work: Path) -> None:
    """Extract regular files only, never outside `work` (no absolute paths, no `..`, no links)."""
    work.mkdir(parents=True)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = Path(info.filename)
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if info.is_dir() or is_link or name.is_absolute() or ".." in name.parts:
                continue
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def _layout(
    student: str, tree: Path, work: Path, kind: str, edit: dict[str, tuple[str, ...]], how: str
) -> Submission:
    entries = [p for p in tree.iterdir() if not p.name.startswith(".")] if tree.is_dir() else []
    if (tree / MANIFEST).is_file():
        problem = _check_manifest(tree)
        if problem:
            return Submission(student, None, kind, problem)
        return Submission(student, tree / "labs", f"{how}, manifest")
    if (tree / "labs").is_dir():
        return Submission(student, tree / "labs", f"{how}, repository")
    if any(LAB_DIR.match(p.name) and p.is_dir() for p in entries):
        return Submission(student, tree, f"{how}, labs folder")
    folders = [p for p in entries if p.is_dir()]
    if len(entries) == 1 and folders:  # GitHub Classroom / "Download ZIP": <repo>-<branch>/
        return _layout(student, folders[0], work, kind, edit, how)
    by_name: dict[str, list[str]] = {}
    for lab, files in edit.items():
        for name in files:
            by_name.setdefault(name, []).append(lab)
    loose = [p for p in entries if p.is_file() and len(by_name.get(p.name, [])) == 1]
    if loose:
        labs = work.parent / f"{work.name}-labs"
        for path in loose:
            target = labs / by_name[path.name][0] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return Submission(student, labs, f"{how}, edited files")
    seen = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in entries)[:8]) or "empty"
    return Submission(
        student,
        None,
        kind,
        f"unknown layout ({seen}): expected labs/, a submission.zip from `make submit` "
        f"(manifest.json), a repository, or the edited files ({', '.join(sorted(by_name))})",
    )


def read_folder(
    folder: Path, work: Path, edit: dict[str, tuple[str, ...]], student: str = "submission"
) -> Submission:
    """One submission already unpacked in `folder` (Gradescope's /autograder/submission)."""
    return _layout(student, folder, work, "folder", edit, "upload")


def _check_manifest(tree: Path) -> str:
    """Empty when every file the manifest lists is there with its sha256."""
    try:
        data = json.loads((tree / MANIFEST).read_text())
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest.json is unreadable: {exc}"
    for item in files:
        path = tree / "labs" / str(item.get("lab", "")) / str(item.get("file", ""))
        if not path.is_file():
            return f"manifest.json lists {item.get('lab')}/{item.get('file')}, which is missing"
        if hashlib.sha256(path.read_bytes()).hexdigest() != item.get("sha256"):
            return (
                f"{item.get('lab')}/{item.get('file')} does not match its sha256 in manifest.json"
            )
    return ""
