"""Run graded suites in a pytest subprocess; a crash costs the lab it happened in, not the others."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.grading.results import (
    CRASHED,
    LAB_DIR,
    NOT_RUN,
    RUNNING,
    GradedTest,
    RunInfo,
    read_results,
)
from harness.runtime.config import ROOT

# Flags for runs whose output a person reads: progress only; the tools print the table.
QUIET = ["-q", "--tb=no", "-rN", "--no-header", "--no-score-table"]


@dataclass(frozen=True)
class Suite:
    """One lab's graded suite: `labs/<lab>/tests`."""

    lab: str
    tests: Path


def command_line(
    module: str, doc: str, argv: list[str] | None
) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """A grading command's parser (`python -m <module>`, its docstring's first line as the
    description) and its words (`argv`, or the command line's) split at `--`: (parser, the
    command's own words, the words after `--`, which go on to pytest)."""
    words = list(sys.argv[1:] if argv is None else argv)
    split = words.index("--") if "--" in words else len(words)
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    return parser, words[:split], words[split + 1 :]


def find_suites(tests_root: Path = ROOT / "labs", only: list[str] | None = None) -> list[Suite]:
    """Every `<tests_root>/labNN_*/tests`, or the labs named/numbered in `only` (`1`, `lab01_batch`)."""
    suites = [
        Suite(path.name, path / "tests")
        for path in sorted(tests_root.iterdir() if tests_root.is_dir() else [])
        if LAB_DIR.match(path.name) and (path / "tests").is_dir()
    ]
    if not only:
        return suites
    wanted = []
    for name in only:
        match = [s for s in suites if s.lab == name or _number(s.lab) == _number_of(name)]
        if not match:
            known = ", ".join(s.lab for s in suites) or "none"
            raise SystemExit(
                f"no graded suite for lab {name!r} under {tests_root} (found: {known})"
            )
        wanted.extend(m for m in match if m not in wanted)
    return wanted


def _number(lab: str) -> int | None:
    match = LAB_DIR.match(lab)
    return int(match.group(1)) if match else None


def _number_of(name: str) -> int | None:
    return int(name) if name.isdigit() else _number(name)


def pytest_command(
    suites: list[Suite],
    json_path: Path,
    target: str = "labs",
    labs_dir: Path | None = None,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    command = [sys.executable, "-m", "pytest", *(str(s.tests) for s in suites)]
    command += [
        "-p",
        "harness.grading.pytest_plugin",
        "--target",
        target,
        "--grade-json",
        str(json_path),
    ]
    # nbval (for the notebooks) takes seconds to import and grades nothing here.
    command += ["--continue-on-collection-errors", "-p", "no:nbval"]
    if labs_dir is not None:
        command += ["--labs-dir", str(labs_dir)]
    return command + list(extra)


@dataclass
class Launch:
    """How the pytest process starts: a wrapper for its command (guard, sandbox), env, limits."""

    wrap: Callable[[list[str]], list[str]] | None = None
    env: dict[str, str] | None = None
    pass_fds: tuple[int, ...] = ()
    preexec: Callable[[], None] | None = None
    memory_mb: float | None = None
    notes: list[str] = field(default_factory=list)


def _tree(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        parent = psutil.Process(process.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """The process group and every descendant (some may have left the group)."""
    members = _tree(process)
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    for proc in members:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _wait(
    process: subprocess.Popen, time_limit: float | None, memory_mb: float | None
) -> int | str:
    """Wait for the exit; past the time or memory limit, kill everything it started."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    while True:
        step = 0.5 if memory_mb else None
        if deadline is not None:
            left = deadline - time.monotonic()
            step = min(step, left) if step else left
        try:
            return process.wait(timeout=max(step, 0.01) if step is not None else None)
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            _kill(process)
            process.wait()
            return "time limit"
        if memory_mb and _rss_mb(_tree(process)) > memory_mb:
            _kill(process)
            process.wait()
            return "memory limit"


def _run(
    command: list[str],
    cwd: Path,
    log: Path | None,
    time_limit: float | None,
    launch: Launch | None = None,
) -> int | str:
    """Exit code (negative: killed by that signal), `"time limit"` or `"memory limit"`."""
    launch = launch or Launch()
    if launch.env is not None:
        env = dict(launch.env)
    else:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if launch.wrap is not None:
        command = launch.wrap(command)
    out = open(log, "a") if log is not None else None  # noqa: SIM115 - closed below
    try:
        if out is not None:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # its own process group: a time limit stops Spark's JVM too
            pass_fds=launch.pass_fds,
            preexec_fn=launch.preexec,  # noqa: PLW1509 - only sets resource limits
        )
        try:
            return _wait(process, time_limit, launch.memory_mb)
        except KeyboardInterrupt:
            _kill(process, signal.SIGINT)
            process.wait()
            raise
    finally:
        if out is not None:
            out.close()


def _why(status: int | str, time_limit: float | None, memory_mb: float | None = None) -> str:
    if status == "time limit":
        return f"the run went over its time limit ({time_limit:g} s)"
    if status == "memory limit":
        return f"the run went over its memory limit ({memory_mb:g} MB)"
    if isinstance(status, int) and status < 0:
        try:
            return f"the test process was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"the test process was killed by signal {-status}"
    return f"the test process exited with code {status}"


def run_suites(
    suites: list[Suite],
    json_path: Path,
    *,
    cwd: Path = ROOT,
    log: Path | None = None,
    target: str = "labs",
    labs_dir: Path | None = None,
    extra: list[str] | tuple[str, ...] = (),
    time_limit: float | None = None,
    launch: Launch | None = None,
) -> tuple[list[GradedTest], RunInfo]:
    """Grade `suites`; after a crash, mark the crashed lab's unfinished tests and run the rest again.

    `json_path` receives each attempt's results.json in turn; the merged results are returned
    (the caller writes the final file).
    """
    started = time.monotonic()
    merged: dict[str, GradedTest] = {}
    info = RunInfo(target=target, labs_dir=str(labs_dir or ""))
    pending = list(suites)
    while pending:
        json_path.unlink(missing_ok=True)
        command = pytest_command(pending, json_path, target, labs_dir, extra)
        status = _run(command, cwd, log, time_limit, launch)
        result = read_results(json_path)
        if result is None:
            info.note = (
                f"{_why(status, time_limit, launch.memory_mb if launch else None)} before it collected the tests"
                + (f"; see {log}" if log else "")
            )
            info.exit_status = status if isinstance(status, int) else None
            break
        tests, attempt = result
        info.collection_errors += attempt.collection_errors
        info.exit_status = status if isinstance(status, int) else None
        unfinished = [t for t in tests if t.status in (RUNNING, NOT_RUN)]
        if attempt.note or not unfinished or status == 4:
            merged.update((t.nodeid, t) for t in tests)
            info.note = attempt.note
            break
        # The process died: blame the lab whose test was running, keep every other lab.
        culprit = next((t for t in tests if t.status == RUNNING), unfinished[0])
        why = _why(status, time_limit, launch.memory_mb if launch else None)
        for test in tests:
            if test.lab == culprit.lab and test.status in (RUNNING, NOT_RUN):
                test.message = (
                    f"The test process stopped while this test ran ({why}). Does the lab's code "
                    f"call exit(), crash Python, or use too much memory? The lab's later tests "
                    f"were not run and score 0."
                    if test is culprit
                    else f"Not run: the test process stopped during {culprit.name} ({why})."
                )
                test.status = CRASHED
        merged.update((t.nodeid, t) for t in tests if t.status != NOT_RUN)
        left = {t.lab for t in tests if t.status == NOT_RUN}
        pending = [s for s in pending if s.lab in left]
    info.execution_time = time.monotonic() - started
    info.complete = not any(t.status in (RUNNING, NOT_RUN) for t in merged.values())
    order = {s.lab: index for index, s in enumerate(suites)}
    tests = sorted(merged.values(), key=lambda t: order.get(t.lab, len(order)))
    return tests, info
