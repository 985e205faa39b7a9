"""Grade one lab of one submission from a scratch folder, so the submission cannot cheat.

The scratch folder holds a read-only copy of the instructor's tests and harness (`course/`) and a
writable copy of the files the student edits (`submission/labs/<lab>/…`, the `edit` list of the
lab's `lab.toml`; nothing else of the submission is copied). The graded process starts through
`harness/grading/guard.py` of the copy (clean `sys.path`, audit hook), inside the bubblewrap
sandbox when it is available, with a wall-time, memory and process limit. Afterwards the copy's
checksums are compared with the ones taken before: a change fails the submission, naming the
file. Every finding scores the lab 0 and is kept as its `integrity` flag.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.grading import sandbox
from harness.grading.results import GradedTest, RunInfo
from harness.grading.runner import Launch, Suite, run_suites
from harness.runtime.config import ROOT, STACK_DIR

# What a graded process needs of the course besides the lab's tests (the harness is always the
# grader's own: the code running now, never a submission's).
COURSE_ITEMS = ("infra", "data", "conftest.py", "pyproject.toml", "pytest.ini", "tox.ini")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "wrong_answers")


@dataclass(frozen=True)
class Limits:
    """Per lab: wall time (s), memory of the whole process tree (MB), processes + threads."""

    time_s: float = 1800.0
    memory_mb: float = 6144.0
    processes: int = 1024


@dataclass
class Workspace:
    """One scratch folder for one lab of one submission."""

    root: Path
    course: Path
    submission: Path
    out: Path
    checksums: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def labs(self) -> Path:
        return self.submission / "labs"


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every link) under `root`, by relative path."""
    sums: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            sums[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            sums[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            sums[relative + "/"] = "dir"
    return sums


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files added, removed or changed, as `changed: labs/…/test_x.py`."""
    out = [f"changed: {p}" for p in before if p in after and after[p] != before[p]]
    out += [f"removed: {p}" for p in before if p not in after]
    out += [f"added: {p}" for p in after if p not in before]
    return sorted(out)


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(
            (mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
            | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0)
        )


def build(scratch: Path, course_root: Path, lab: str, source_labs: Path) -> Workspace:
    """Lay out the scratch folder for `lab`: the course copy and the submission's edited files."""
    ws = Workspace(
        root=scratch,
        course=scratch / "course",
        submission=scratch / "submission",
        out=scratch / "out",
    )
    shutil.copytree(ROOT / "harness", ws.course / "harness", ignore=IGNORED, symlinks=True)
    for name in COURSE_ITEMS:
        source = course_root / name
        if source.is_dir():
            shutil.copytree(source, ws.course / name, ignore=IGNORED, symlinks=True)
        elif source.is_file():
            ws.course.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, ws.course / name)
    lab_source = course_root / "labs" / lab
    shutil.copytree(lab_source / "tests", ws.course / "labs" / lab / "tests", ignore=IGNORED)
    shutil.copy2(lab_source / "lab.toml", ws.course / "labs" / lab / "lab.toml")
    edit = edit_files(course_root / "labs", lab)
    target = ws.labs / lab
    target.mkdir(parents=True)
    for name in edit:
        source = source_labs / lab / name
        # Only regular files: a link could point at the reference or at another submission.
        if source.is_symlink():
            ws.skipped.append(f"{lab}/{name}: a symbolic link (not graded)")
        elif source.is_file():
            shutil.copyfile(source, target / name)
    ws.out.mkdir()
    ws.checksums = checksums(ws.course)
    _read_only(ws.course)
    return ws


def edit_files(labs_root: Path, lab: str) -> tuple[str, ...]:
    """The files a student edits in `lab` (the `edit` list of its lab.toml)."""
    manifest = labs_root / lab / "lab.toml"
    try:
        return tuple(tomllib.loads(manifest.read_text()).get("edit", ()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LookupError(f"{manifest}: cannot read the lab's `edit` list: {exc}") from None


def _drain(fd: int) -> list[str]:
    """Everything the guard reported (non-blocking: a leftover child may hold the pipe open)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    findings = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        try:
            findings.append(str(json.loads(line)["what"]))
        except (ValueError, KeyError, TypeError):
            findings.append(f"unreadable integrity report: {line[:200]}")
    return findings


def _env(ws: Workspace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OPENSKY_STACK_DIR"] = str(STACK_DIR)
    # Spark's Python workers and spark-submit's children import the harness from the copy.
    env["PYTHONPATH"] = str(ws.course)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(ws.root / "home")
    return env


def grade_lab(
    lab: str,
    source_labs: Path,
    *,
    course_root: Path = ROOT,
    protect: list[Path] | None = None,
    limits: Limits | None = None,
    use_sandbox: bool | None = None,
    extra: list[str] | tuple[str, ...] = (),
    log: Path | None = None,
) -> tuple[list[GradedTest], RunInfo]:
    """Grade `source_labs/<lab>` (a submission's labs/ folder) with the instructor's suite of `lab`.

    `use_sandbox`: True requires bubblewrap, False never uses it, None uses it when available.
    `protect`: trees the submission may not read (the instructor's repository is always one).
    """
    limits = limits or Limits()
    found = sandbox.availability()
    if use_sandbox and not found.ok:
        raise RuntimeError(f"the sandbox was required but is not available: {found.reason}")
    sandboxed = found.ok if use_sandbox is None else use_sandbox
    protected = list(
        dict.fromkeys([course_root.resolve(), ROOT, *(p.resolve() for p in protect or [])])
    )
    with tempfile.TemporaryDirectory(prefix=f"grade-{lab}-") as temp:
        scratch = Path(temp)
        scratch.chmod(0o755)
        ws = build(scratch, course_root, lab, source_labs)
        (ws.root / "home").mkdir()
        read_fd, write_fd = os.pipe()
        guard = ws.course / "harness" / "grading" / "guard.py"
        options = ["--report-fd", str(write_fd), "--copy", str(ws.course)]
        options += ["--submission", str(ws.submission), "--allow", str(STACK_DIR)]
        for path in protected:
            options += ["--protect", str(path)]

        def wrap(command: list[str]) -> list[str]:
            # command = [python, -m, pytest, args…]: start through the copy's guard instead.
            guarded = [command[0], "-I", "-B", str(guard), *options, "--", *command[3:]]
            if not sandboxed:
                return guarded
            return sandbox.wrap(
                guarded,
                uid=uid,
                readonly=[Path(sys.prefix), Path(sys.base_prefix), STACK_DIR / "jars", ws.course],
                writable=[ws.submission, ws.out, ws.root / "home"],
                cwd=ws.submission,
            )

        uid = sandbox.run_uid()
        if sandboxed:
            sandbox.give_to_sandbox(ws.submission, ws.out, ws.root / "home", uid=uid)
        launch = Launch(
            wrap=wrap,
            env=_env(ws),
            pass_fds=(write_fd,),
            preexec=sandbox.limits(limits.processes) if sandboxed else None,
            memory_mb=limits.memory_mb,
        )
        try:
            tests, info = run_suites(
                [Suite(lab, ws.course / "labs" / lab / "tests")],
                ws.out / "results.json",
                labs_dir=ws.labs,
                extra=["--rootdir", str(ws.course), "-p", "no:cacheprovider", *extra],
                cwd=ws.submission,
                log=log,
                time_limit=limits.time_s,
                launch=launch,
            )
        finally:
            os.close(write_fd)
            findings = _drain(read_fd)
            os.close(read_fd)
        findings += [
            f"the instructor's copy was modified ({change})"
            for change in changed(ws.checksums, checksums(ws.course))
        ]
        info.sandbox = found.reason if sandboxed else f"NOT sandboxed: {found.reason}"
        info.skipped_files = ws.skipped
        _make_writable(ws.root)
    flag(tests, info, findings)
    return tests, info


def flag(tests: list[GradedTest], info: RunInfo, findings: list[str]) -> None:
    """Score every test of a flagged run 0 and say why."""
    if not findings:
        return
    info.integrity = list(dict.fromkeys(findings))
    reason = info.integrity[0]
    for test in tests:
        test.integrity = reason
        test.message = f"Integrity: {reason}. This lab scores 0.\n{test.message}".rstrip()


def _make_writable(root: Path) -> None:
    """So the temporary folder can be removed (the copy was made read-only)."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink() and path.is_dir():
            path.chmod(0o755)
