"""Building blocks of the native stack: one `Service` per server, local processes on 127.0.0.1.

Layout under `STACK_DIR` (git-ignored):
    bin/        built or downloaded binaries (minio, ...)
    jars/<svc>/ jars fetched from Maven Central by infra/native/<svc>/pom.xml
    data/<svc>/ the service's data
    logs/<svc>.log
    run/<svc>.pid
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from harness.runtime.config import STACK_DIR, setting
from harness.runtime.services import port_open
from harness.runtime.waits import wait_quietly

BIN_DIR = STACK_DIR / "bin"
JARS_DIR = STACK_DIR / "jars"
DATA_ROOT = STACK_DIR / "data"
LOG_DIR = STACK_DIR / "logs"
RUN_DIR = STACK_DIR / "run"
# Built binaries and fetched jars, shared by every clone of the course on this machine (keyed by version).
USER_CACHE = Path(
    os.environ.get("OPENSKY_LABS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opensky-labs"
)


def _copy(src: Path, dest: Path) -> None:
    """Hard links where the file system allows (no second copy on disk), plain copies otherwise."""

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_dir():
        shutil.copytree(src, dest, copy_function=link_or_copy)
    else:
        link_or_copy(str(src), str(dest))


def _replace(src: Path, dest: Path) -> None:
    staged = dest.with_name(dest.name + ".staged")
    _remove(staged)
    _copy(src, staged)
    _remove(dest)
    staged.rename(dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def restore_from_user_cache(key: str, dest: Path, verify: Callable[[], bool]) -> bool:
    """Put the cached copy of `key` (a file or folder another clone built) at `dest` and `verify`
    it there; False when there is none or it fails (a damaged entry is dropped from the cache)."""
    cached = USER_CACHE / key
    if not cached.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    _replace(cached, dest)
    if not verify():
        log(f"      {cached} failed its check: dropped from the cache, fetching again")
        _remove(cached)
        _remove(dest)
        return False
    log(f"      reused {cached} (built before on this machine)")
    return True


def save_to_user_cache(key: str, src: Path) -> None:
    """Keep a verified build or download for every later clone; never fails the set-up."""
    cached = USER_CACHE / key
    if cached.exists():
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _replace(src, cached)
    except OSError as exc:
        log(f"      (could not keep {src.name} in {USER_CACHE}: {exc})")


class StackError(RuntimeError):
    """A native service could not be installed or started; the message says why and what to do."""


def log(message: str) -> None:
    print(message, flush=True)


def apt_install(packages: list[str], what: str) -> None:
    """Install Debian packages with apt-get (as root: CI and containers); a StackError naming the
    command to run otherwise, or when apt-get fails."""
    command = f"sudo apt-get install -y {' '.join(packages)}"
    if os.geteuid() != 0:
        raise StackError(f"{what} is missing and we are not root. Install it with: {command}")
    log(f"      apt-get install -y {' '.join(packages)} ({what})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        if subprocess.run(argv, env=env).returncode != 0:
            raise StackError(f"`{' '.join(argv)}` failed; install {what} by hand and retry.")


class Service:
    """One native server. A subclass declares its name, title and address settings in its class
    line (see `__init_subclass__`), sets `host` and `port` itself when no `<env>_HOST`/`_PORT`
    settings give them, and implements the hooks."""

    name: str = ""
    title: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    # The prefix of the infra/.env settings `<env>_HOST` and `<env>_PORT` that hold the service's
    # address (read when it is created); empty for a service that finds its address itself.
    env: str = ""
    start_timeout: float = 90.0
    # A long, CPU-bound install (a build from source) that can run in the background while the
    # other services download and start: `install(output=...)` then writes its tool's output there.
    builds_in_background: bool = False

    def __init_subclass__(cls, **declared: Any) -> None:
        """A service declares itself in its class line:
        `class KafkaBroker(Service, name="kafka", title="Kafka broker", env="KAFKA")`."""
        for key, value in declared.items():
            if key not in ("name", "title", "env", "start_timeout", "builds_in_background"):
                raise TypeError(f"{cls.__name__}: a service does not declare {key!r}")
            setattr(cls, key, value)
        super().__init_subclass__()

    def __init__(self) -> None:
        if self.env:
            self.host = setting(f"{self.env}_HOST")
            self.port = int(setting(f"{self.env}_PORT"))

    # ---- paths
    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def log_file(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    # ---- hooks
    def installed(self) -> bool:
        """True when everything `start()` needs is on disk."""
        raise NotImplementedError

    def install(self, output: Path | None = None) -> None:
        """Fetch or build what the service needs (idempotent, verifies what it downloads).
        `output`: a file for the build tool's own output (background builds)."""
        raise NotImplementedError

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The argv and extra environment that run the server in the foreground."""
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time initialisation of the data directory (format storage, initdb, ...)."""

    def after_start(self) -> None:
        """Work once the port answers (create buckets, databases, ...)."""

    def healthy(self) -> bool:
        return port_open(self.host, self.port)

    # ---- process management
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> bool:
        """Start unless already running; returns True when a process was started."""
        if self.running() and self.healthy():
            return False
        if not self.running() and self.healthy():
            raise StackError(
                f"{self.title}: port {self.host}:{self.port} is taken by a process that is not "
                f"ours. Stop it, or set the port variable in infra/.env / the environment."
            )
        if not self.installed():
            self.install()
        for d in (self.data_dir, LOG_DIR, RUN_DIR):
            d.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, env = self.command()
        spawn(self.name, argv, env, self.log_file, self.pid_file)
        self.wait_healthy()
        self.after_start()
        return True

    def wait_healthy(self) -> None:
        def answering() -> bool:
            if self.healthy():
                return True
            if not self.running():
                raise StackError(
                    f"{self.title} exited during start. Last lines of {self.log_file}:\n"
                    + tail(self.log_file)
                )
            return False

        if not wait_quietly(answering, self.start_timeout, every=0.5):
            raise StackError(
                f"{self.title} did not answer on {self.host}:{self.port} within "
                f"{self.start_timeout:.0f} s. Last lines of {self.log_file}:\n"
                + tail(self.log_file)
            )

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def spawn(name: str, argv: list[str], env: dict[str, str], log_file: Path, pid_file: Path) -> int:
    """Run `argv` detached in its own session, output appended to `log_file`, pid recorded."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env}
    with open(log_file, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def terminate(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group of `pid`, SIGKILL it if it is still there after `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_quietly(lambda: not pid_alive(pid), timeout):
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return "java"


def python() -> str:
    return sys.executable


def _tree_total(pid: int, measure: Callable[[psutil.Process], int]) -> int:
    """`measure` summed over `pid` and its descendants (a process that is gone counts 0)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += measure(psutil.Process(p))
        except psutil.Error:
            pass
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants."""
    return _tree_total(pid, lambda process: process.memory_info().rss)


def pss_bytes(pid: int) -> int:
    """Proportional memory of `pid` and its descendants: shared pages split among their users
    (PostgreSQL's shared buffers count once, not once per backend)."""
    return _tree_total(pid, lambda process: process.memory_full_info().pss)


def descendants(pid: int) -> list[int]:
    """Every process started by `pid`, its children's children included."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
