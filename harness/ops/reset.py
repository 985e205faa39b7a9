"""`make reset`: stop the lab stack and wipe its data, so the next `make up` starts clean.

    python -m harness.ops.reset [--yes] [--start]

Asks first (or proceeds with `--yes` / `YES=1`). Native stack: runs `python -m harness.ops.stack down`,
then deletes `.stack/data` (every service's data; PostgreSQL's may be a symlink to
/var/tmp/opensky-labs-*/postgres, whose target goes too) and `.stack/run` (pid and lock files).
Downloads and builds are kept (`.stack/jars`, `.stack/bin`), and so are the logs. Docker stack:
`docker compose down --volumes`. `--start` brings the stack up again afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.runtime.config import ROOT, STACK_DIR, setting

DATA_ROOT = STACK_DIR / "data"
RUN_DIR = STACK_DIR / "run"
KEPT = ("jars", "bin", "logs")
TRUE = {"1", "y", "yes", "true"}


def which_stack() -> str:
    from harness.runtime.config import stack

    try:
        return stack()
    except ValueError as exc:
        raise SystemExit(f"reset: {exc}") from exc


def confirmed(assume_yes: bool, what: str) -> bool:
    """True when the user agreed: `--yes`, `YES=1`, or a `y` typed at the prompt."""
    if assume_yes or os.environ.get("YES", "").strip().lower() in TRUE:
        return True
    if not sys.stdin.isatty():
        print(
            f"reset would {what}.\nNot confirmed (no terminal to ask): run `make reset YES=1` "
            "or `python -m harness.ops.reset --yes`.",
            file=sys.stderr,
        )
        return False
    answer = input(f"This will {what}.\nContinue? [y/N] ").strip().lower()
    return answer in TRUE


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _safe_target(target: Path) -> bool:
    """A symlink target we may delete: inside the stack's folder, or the stack's own folder in the
    temporary directory (`/var/tmp/opensky-labs-<hash>/<service>`, see harness/ops/stack/postgres.py);
    never anything else."""
    target = target.resolve()
    if STACK_DIR.resolve() in target.parents:
        return True
    temp_roots = {Path("/var/tmp").resolve(), Path("/tmp").resolve()}
    temp_roots.add(Path(tempfile.gettempdir()).resolve())
    return target.parent.name.startswith("opensky-labs-") and target.parent.parent in temp_roots


def _remove_tree(path: Path) -> int:
    """Delete `path` (a folder, a file or a symlink); returns the bytes freed."""
    if path.is_symlink():
        path.unlink()
        return 0
    if not path.exists():
        return 0
    freed = _size(path) if path.is_dir() else path.stat().st_size
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return freed


def wipe_native() -> tuple[list[str], int]:
    """Delete `.stack/data` (and the targets of symlinks in it) and `.stack/run`."""
    removed: list[str] = []
    freed = 0
    if DATA_ROOT.is_dir():
        for entry in sorted(DATA_ROOT.iterdir()):
            if not entry.is_symlink():
                continue
            target = Path(os.path.realpath(entry))
            if target.exists() and _safe_target(target):
                freed += _remove_tree(target)
                removed.append(str(target))
                parent = target.parent
                if parent.name.startswith("opensky-labs-") and not any(parent.iterdir()):
                    parent.rmdir()
            elif target.exists():
                print(f"  kept {target}: {entry} points outside the stack's folders", flush=True)
            entry.unlink()
    for folder in (DATA_ROOT, RUN_DIR):
        if folder.exists() or folder.is_symlink():
            freed += _remove_tree(folder)
            removed.append(str(folder))
    return removed, freed


def _still_running() -> list[str]:
    """Pid files naming a live session leader after `down` (a server we could not stop)."""
    alive = []
    for pid_file in sorted(RUN_DIR.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
            if os.getsid(pid) == pid:
                alive.append(f"{pid_file.stem} (pid {pid})")
        except (OSError, ValueError):
            continue
    return alive


def _module(*args: str) -> int:
    """Run `python -m <args>` from the repository root with this interpreter."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT).returncode


def reset_native(start: bool) -> int:
    print("Stopping the native stack: python -m harness.ops.stack down", flush=True)
    rc = _module("harness.ops.stack", "down")
    if rc != 0:
        print(
            f"`python -m harness.ops.stack down` failed (exit {rc}); nothing was deleted. "
            "Look at its message above, then run `make reset` again.",
            file=sys.stderr,
        )
        return rc
    alive = _still_running()
    if alive:
        print(
            f"Still running after down: {', '.join(alive)}; nothing was deleted.",
            file=sys.stderr,
        )
        return 1
    removed, freed = wipe_native()
    for path in removed:
        print(f"  deleted {path}")
    kept = ", ".join(str(STACK_DIR / k) for k in KEPT if (STACK_DIR / k).exists())
    print(f"Stack data wiped ({freed / 2**20:,.0f} MiB freed). Kept: {kept or 'nothing else'}.")
    if start:
        print("Starting a clean stack: python -m harness.ops.stack up", flush=True)
        return _module("harness.ops.stack", "up")
    print("Start a clean stack with: make up")
    return 0


def reset_docker(start: bool) -> int:
    print("Removing the docker stack and its volumes: docker compose down --volumes", flush=True)
    rc = _module("harness.ops.docker_stack", "down-volumes")
    if rc != 0 or not start:
        if rc == 0:
            print("Docker stack and its data removed. Start a clean stack with: make up")
        return rc
    return _module("harness.ops.docker_stack", "up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.reset",
        description="Stop the lab stack and delete its data (downloads are kept).",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask (same as YES=1)")
    parser.add_argument("--start", action="store_true", help="start a clean stack afterwards")
    args = parser.parse_args(argv)
    stack = which_stack()
    if stack == "external":
        print(
            f"STACK={setting('STACK', 'auto')}: the services are not ours to reset; "
            "ask your course admin.",
            file=sys.stderr,
        )
        return 1
    if stack == "docker":
        what = "stop the docker lab stack and delete its volumes (every table, topic and object)"
    else:
        what = (
            f"stop the lab stack and delete its data in {DATA_ROOT} (every table, topic and "
            "object) — downloads are kept"
        )
    if not confirmed(args.yes, what):
        print("Nothing was changed.")
        return 1
    try:
        return reset_docker(args.start) if stack == "docker" else reset_native(args.start)
    except KeyboardInterrupt:
        print("\nInterrupted. Run `make reset` again to finish.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
