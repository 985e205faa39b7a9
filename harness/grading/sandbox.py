"""The sandbox for untrusted submissions: bubblewrap, loopback network shared, a process limit.

Inside, a graded process sees the system's programs and libraries read-only, the interpreter and
its packages read-only, the instructor's copy of the tests read-only, and its own scratch copy
writable; not `solutions/`, not other submissions, not the instructor's home. It runs as an
unprivileged user, so a process limit (RLIMIT_NPROC) bounds a fork bomb; the network namespace is
shared so the lab's services on 127.0.0.1 answer.

    python -m harness.grading.sandbox install   # apt-get install bubblewrap (set-up runs this)
    python -m harness.grading.sandbox status    # is the sandbox usable here, and if not, why
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = "bubblewrap"
SANDBOX_UID = 65534  # `nobody`: the probe's user
# Each grading run gets its own unused uid, so the process limit (counted per uid, machine-wide)
# is that run's alone, even with several graders on one machine.
RUN_UID_BASE = 200_000
SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/sys")
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib64", "/lib32")


@dataclass(frozen=True)
class Availability:
    """Whether the sandbox works on this machine, and why not."""

    ok: bool
    reason: str


@lru_cache(maxsize=1)
def availability() -> Availability:
    """Try bubblewrap once: present, allowed to make namespaces, able to drop to `nobody`."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Availability(
            False,
            f"bubblewrap is not installed (run: {sys.executable} -m "
            "harness.grading.sandbox install, or apt-get install bubblewrap)",
        )
    if os.geteuid() != 0:
        return Availability(
            False,
            "the grader is not root, so it cannot run submissions as an "
            "unprivileged user with a process limit",
        )
    probe = wrap(["true"], readonly=[], writable=[], cwd=Path("/"))
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"bubblewrap does not start: {exc}")
    if result.returncode != 0:
        return Availability(
            False, f"bubblewrap cannot make its namespaces here: {result.stderr.strip()[:300]}"
        )
    return Availability(True, f"bubblewrap ({bwrap}), each submission runs as its own uid")


def wrap(
    command: list[str],
    *,
    readonly: list[Path],
    writable: list[Path],
    cwd: Path,
    env: dict[str, str] | None = None,
    uid: int = SANDBOX_UID,
) -> list[str]:
    """`command` inside a bubblewrap sandbox; `readonly`/`writable` are bound at the same paths."""
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"]
    # A fresh /tmp that everyone may write (sticky), like the host's: pytest and Spark need one.
    args += [
        "--unshare-uts",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    for folder in SYSTEM_DIRS:
        if Path(folder).is_dir():
            args += ["--ro-bind", folder, folder]
    for link in MERGED_USR:
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            args += ["--ro-bind", link, link]
    made: set[Path] = {Path("/"), Path("/tmp")}
    for option, folders in (("--ro-bind", _unique(readonly)), ("--bind", _unique(writable))):
        for folder in folders:
            # bubblewrap makes missing parents mode 0700: the sandbox's user could not pass them.
            for parent in reversed(folder.parents):
                if parent not in made and not str(parent).startswith(SYSTEM_DIRS):
                    args += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            args += [option, str(folder), str(folder)]
            made.add(folder)
    args += ["--chdir", str(cwd), "--setenv", "HOME", "/tmp"]
    for key, value in (env or {}).items():
        args += ["--setenv", key, value]
    ids = str(uid)
    args += ["--", "setpriv", "--reuid", ids, "--regid", ids, "--clear-groups", "--"]
    return args + command


def _unique(paths: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved.exists() and resolved not in seen:
            seen.append(resolved)
    return seen


def limits(max_processes: int) -> Callable[[], None]:
    """A preexec function: at most `max_processes` processes/threads for the sandbox's user."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_uid() -> int:
    """An unused uid for one grading run (no account needed: the kernel only counts it)."""
    return RUN_UID_BASE + os.getpid() % 100_000


def give_to_sandbox(*folders: Path, uid: int = SANDBOX_UID) -> None:
    """Make folders writable by the sandbox's user (it owns them)."""
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, uid, uid)


def install() -> int:
    """apt-get install bubblewrap, the way set-up installs PostgreSQL's binaries."""
    if shutil.which("bwrap"):
        print("bubblewrap: already installed")
        return 0
    if os.geteuid() != 0:
        print(f"bubblewrap is missing; install it with: sudo apt-get install -y {PACKAGE}")
        return 1
    print(f"[setup] apt-get install -y {PACKAGE} (the sandbox for grading submissions)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", PACKAGE]):
        if subprocess.run(argv, env=env).returncode != 0:
            print(f"`{' '.join(argv)}` failed; install {PACKAGE} by hand and retry.")
            return 1
    availability.cache_clear()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "status"
    if command == "install":
        return install()
    if command == "status":
        found = availability()
        print(f"sandbox: {'available' if found.ok else 'NOT available'}: {found.reason}")
        return 0 if found.ok else 1
    print("usage: python -m harness.grading.sandbox install|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
