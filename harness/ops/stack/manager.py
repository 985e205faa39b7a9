"""The native stack's command line: `python -m harness.ops.stack install|up|down|status|restart [svc...]`.

- `install` fetches and builds everything, starts nothing; resumable, verifies what it downloads.
- `up` starts what is not running (a dead process or a stale pid file is restarted), after checking
  that no port is held by a program that is not ours; a second `up` starts nothing.
- `down` stops what we started, in reverse order, and waits until none of our processes is left.
- `status` prints one table (service, endpoint, state, pid, memory); exit 0 only when all are up.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import threading
import time
from contextlib import contextmanager

import psutil

from harness.ops import ports
from harness.ops.stack.base import (
    LOG_DIR,
    RUN_DIR,
    Service,
    StackError,
    rss_bytes,
    terminate,
)
from harness.ops.stack.clickhouse import ChdbServer
from harness.ops.stack.connect import KafkaConnect
from harness.ops.stack.kafka import KafkaBroker
from harness.ops.stack.minio import MinIO
from harness.ops.stack.postgres import Postgres
from harness.ops.stack.spark_cluster import SparkMaster, SparkWorker
from harness.runtime.config import STACK_DIR, stack
from harness.runtime.waits import wait_quietly

# Start order; `down` goes the other way. Connect needs Kafka and PostgreSQL, the worker the master.
SERVICE_CLASSES: tuple[type[Service], ...] = (
    Postgres,
    MinIO,
    ChdbServer,
    KafkaBroker,
    KafkaConnect,
    SparkMaster,
    SparkWorker,
)
DEPENDS_ON = {"connect": ("kafka", "postgres"), "spark-worker": ("spark-master",)}


# ------------------------------------------------------------------ selection
def all_services() -> list[Service]:
    return [cls() for cls in SERVICE_CLASSES]


def select(names: list[str] | None, with_dependencies: bool = False) -> list[Service]:
    """The services named (all when `names` is empty), in start order."""
    services = all_services()
    if not names:
        return services
    known = {s.name: s for s in services}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(
            f"unknown service(s) {', '.join(unknown)}; choose from: {', '.join(known)}"
        )
    wanted = set(names)
    if with_dependencies:
        todo = list(wanted)
        while todo:
            for dep in DEPENDS_ON.get(todo.pop(), ()):
                if dep not in wanted:
                    wanted.add(dep)
                    todo.append(dep)
    return [s for s in services if s.name in wanted]


# ------------------------------------------------------------------ which processes are ours
def _process(pid: int) -> psutil.Process | None:
    """The live (not zombie) process `pid`, or None."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def owned_pid(service: Service) -> int | None:
    """The service's pid when its pid file names a live process that we started.

    After a crash or a reboot a pid file can name a process that is not ours (pid reuse): ours is
    the leader of its own session (we start every server with setsid) and did not start before the
    pid file was written.
    """
    pid = service.pid()
    if pid is None:
        return None
    process = _process(pid)
    try:
        written = service.pid_file.stat().st_mtime
        started = process.create_time() if process else None
    except (OSError, psutil.Error):
        return None
    if started is None or _session_of(pid) != pid or started > written + 5:
        return None
    return pid


def session_members(sid: int) -> list[int]:
    """Every live process in session `sid` (a server we spawned and all it forked)."""
    members = []
    for process in psutil.process_iter():
        if _session_of(process.pid) == sid and _process(process.pid) is not None:
            members.append(process.pid)
    return members


def our_processes() -> dict[str, list[int]]:
    """Live processes of ours, by service: members of the sessions named in `.stack/run/*.pid`."""
    found: dict[str, list[int]] = {}
    for pid_file in sorted(RUN_DIR.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        members = session_members(pid)
        if members:
            found[pid_file.stem] = members
    return found


# ------------------------------------------------------------------ ports
def port_conflicts(services: list[Service]) -> list[str]:
    """Messages for every port a not-running service needs that another program holds."""
    ours = {pid for pids in our_processes().values() for pid in pids}
    problems = []
    for service in services:
        if owned_pid(service) is not None:
            continue
        for variable, port in ports.ports_of(service.name):
            owner = ports.port_owner(port)
            if owner is None or owner[0] in ours:
                continue
            problems.append(ports.conflict_message(port, service.title, variable, owner))
    return problems


# ------------------------------------------------------------------ progress output
class Progress:
    """`[3/7] Kafka broker: starting… done in 12 s`, with a heartbeat while a step is long."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self._lock = threading.Lock()
        self._open = False
        self._prefix = ""

    def begin(self, title: str, action: str, same_step: bool = False) -> None:
        if not same_step:
            self.index += 1
        self._prefix = f"[{self.index}/{self.total}] {title}:"
        self._write(f"{self._prefix} {action}…", open_line=True)

    def note(self, title: str, text: str) -> None:
        self.index += 1
        self._write(f"[{self.index}/{self.total}] {title}: {text}\n")

    def end(self, text: str) -> None:
        self._write(f" {text}\n" if self._open else f"{self._prefix} {text}\n")

    def _write(self, text: str, open_line: bool = False) -> None:
        with self._lock:
            out = sys.__stdout__
            if self._open and not text.startswith(" "):
                out.write("\n")
            out.write(text)
            out.flush()
            self._open = open_line

    @contextmanager
    def heartbeat(self, what: str):
        """Print a dot every few seconds (or a line every 20 s once other output interrupted us)."""
        stop = threading.Event()
        t0 = time.monotonic()

        def beat() -> None:
            ticks = 0
            while not stop.wait(3):
                ticks += 1
                with self._lock:
                    if self._open:
                        sys.__stdout__.write(".")
                        sys.__stdout__.flush()
                        continue
                if ticks % 7 == 0:
                    self._write(f"      … {what} ({time.monotonic() - t0:.0f} s so far)\n")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class _LineTracker:
    """Stdout wrapper: output from a service's own `log()` starts on a fresh line."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def write(self, text: str) -> int:
        with self.progress._lock:
            if self.progress._open and text:
                sys.__stdout__.write("\n")
                self.progress._open = False
            sys.__stdout__.write(text)
        return len(text)

    def flush(self) -> None:
        sys.__stdout__.flush()


@contextmanager
def tracked_stdout(progress: Progress):
    saved = sys.stdout
    sys.stdout = _LineTracker(progress)
    try:
        yield
    finally:
        sys.stdout = saved


def _secs(t0: float) -> str:
    return f"{time.monotonic() - t0:.0f} s"


@contextmanager
def stack_lock():
    """One `up`/`down`/`install` at a time (two terminals, or tests in parallel)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "stack.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("Another `harness.ops.stack` command is running; waiting for it…", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ------------------------------------------------------------------ commands
class BackgroundBuild:
    """A service's slow build (MinIO from source) in a thread, while the others install and start.

    The build tool's output goes to `.stack/logs/<service>-install.log`; `wait()` re-raises its error.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self.log = LOG_DIR / f"{service.name}-install.log"
        self.started = time.monotonic()
        self.error: BaseException | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, name=f"build-{service.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.install(output=self.log)
        except BaseException as exc:  # handed to the main thread by wait()
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def start_background_builds(services: list[Service]) -> dict[str, BackgroundBuild]:
    """Start the slow builds of `services` that are not installed; nothing selected may depend on
    them (they come last in the start order)."""
    needed = {dep for s in services for dep in DEPENDS_ON.get(s.name, ())}
    return {
        s.name: BackgroundBuild(s)
        for s in services
        if s.builds_in_background and s.name not in needed and not s.installed()
    }


def builds_last(services: list[Service], builds: dict[str, BackgroundBuild]) -> list[Service]:
    return [s for s in services if s.name not in builds] + [s for s in services if s.name in builds]


def _install_one(service: Service, progress: Progress, builds: dict[str, BackgroundBuild]) -> None:
    build = builds.get(service.name)
    if build is None:
        with progress.heartbeat("still installing"):
            service.install()
        return
    with progress.heartbeat(f"still building in the background, log: {build.log}"):
        build.wait()


def install(names: list[str] | None = None, quiet: bool = False) -> int:
    services = select(names)
    if quiet and all(service.installed() for service in services):
        return 0
    progress = Progress(len(services))
    t_all = time.monotonic()
    with stack_lock(), tracked_stdout(progress):
        builds = start_background_builds(services)
        for service in builds_last(services, builds):
            if service.name not in builds and service.installed():
                progress.note(service.title, "already installed")
                continue
            started = builds[service.name].started if service.name in builds else time.monotonic()
            progress.begin(service.title, "installing")
            _install_one(service, progress, builds)
            progress.end(f"done in {_secs(started)}")
    print(f"Set-up complete in {_secs(t_all)}. Start the stack with: make up", flush=True)
    return 0


def up(names: list[str] | None = None) -> int:
    services = select(names, with_dependencies=True)
    t_all = time.monotonic()
    with stack_lock():
        # A pid file whose process is gone, or is not ours any more (crash, reboot, pid reuse),
        # must not block the start: the service is started again.
        stale = set()
        for service in services:
            if service.pid_file.exists() and owned_pid(service) is None:
                stale.add(service.name)
                _reap_orphans(service)
                service.pid_file.unlink(missing_ok=True)
        problems = port_conflicts(services)
        if problems:
            print("Cannot start the lab stack; nothing was started:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 2
        progress = Progress(len(services))
        started = 0
        with tracked_stdout(progress):
            builds = start_background_builds(services)
            for service in builds_last(services, builds):
                try:
                    started += _up_one(service, progress, service.name in stale, builds)
                except StackError as exc:
                    progress.end("FAILED")
                    print(f"\nERROR: {exc}\n", file=sys.stderr, flush=True)
                    status(None, header=False)
                    print(f"\nFix the error above and run `make up` again (logs: {LOG_DIR}).")
                    return 1
    if started == 0 and names:
        # A lab run (`up --lab N`) with everything already up: one line, then the lab's output.
        print(f"Services up: {', '.join(s.name for s in services)}.")
        return 0
    print()
    status([s.name for s in services] if names else None, header=False)
    if started == 0:
        print(f"Nothing to start: all {len(services)} services were already running.")
    else:
        print(f"Started {started} of {len(services)} services in {_secs(t_all)}.")
    return 0


def _up_one(
    service: Service, progress: Progress, died: bool, builds: dict[str, BackgroundBuild]
) -> int:
    """Bring one service up; returns 1 when a process was started."""
    pid = owned_pid(service)
    if pid is not None:
        if service.healthy():
            progress.note(service.title, f"already running (pid {pid})")
            return 0
        progress.begin(service.title, f"running (pid {pid}) but not answering; waiting")
        t0 = time.monotonic()
        with progress.heartbeat("waiting"):
            answering = wait_quietly(service.healthy, service.start_timeout, every=1)
        if answering:
            progress.end(f"answering after {_secs(t0)}")
            return 0
        progress.end("still not answering: restarting it")
        service.stop()
        _reap_session(pid)
        died = True
    same_step = pid is not None
    t0 = time.monotonic()
    if service.name in builds or not service.installed():
        progress.begin(service.title, "installing", same_step)
        _install_one(service, progress, builds)
        progress.end(
            f"done in {_secs(builds[service.name].started if service.name in builds else t0)}"
        )
        same_step = True
        t0 = time.monotonic()
    action = "restarting (its process had died)" if died else "starting"
    progress.begin(service.title, action, same_step)
    with progress.heartbeat("still starting"):
        service.start()
    progress.end(f"done in {_secs(t0)} (pid {service.pid()})")
    return 1


def down(names: list[str] | None = None) -> int:
    services = list(reversed(select(names)))
    progress = Progress(len(services))
    sessions: dict[str, int] = {}
    with stack_lock(), tracked_stdout(progress):
        for service in services:
            pid = owned_pid(service)
            if pid is None:
                service.pid_file.unlink(missing_ok=True)
                progress.note(service.title, "not running")
                continue
            sessions[service.name] = pid
            progress.begin(service.title, f"stopping pid {pid}")
            t0 = time.monotonic()
            with progress.heartbeat("still stopping"):
                service.stop()
                _reap_session(pid)
            progress.end(f"done in {_secs(t0)}")
    left = {name: session_members(sid) for name, sid in sessions.items() if session_members(sid)}
    if left:
        print(f"Still running after down: {left}", file=sys.stderr)
        return 1
    print("Stopped. No process of the lab stack is left." if not names else "Stopped.")
    return 0


def _reap_session(sid: int, timeout: float = 15.0) -> None:
    """Wait until every process of session `sid` is gone (children included), killing stragglers."""
    if wait_quietly(lambda: not session_members(sid), timeout):
        return
    for pid in session_members(sid):
        terminate(pid, timeout=5)


def _reap_orphans(service: Service) -> None:
    """Stop what is left of a server whose main process died (e.g. executors of a killed worker).

    Linux never hands out a pid still used as a session id, so when the recorded pid is dead,
    the members of its session are leftovers of our server.
    """
    try:
        pid = int(service.pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if service.pid() is None and session_members(pid):
        _reap_session(pid, timeout=0)


def restart(names: list[str] | None = None) -> int:
    rc = down(names)
    return up(names) or rc


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "-"


def status(names: list[str] | None = None, header: bool = True) -> int:
    services = select(names)
    rows = []
    total = 0
    all_up = True
    for service in services:
        pid = owned_pid(service)
        endpoint = getattr(service, "endpoint", None) or f"{service.host}:{service.port}"
        if not isinstance(endpoint, str):
            endpoint = f"{service.host}:{service.port}"
        if pid is not None:
            state = "up" if service.healthy() else "not answering"
            memory = rss_bytes(pid)
        else:
            owner = ports.port_owner(service.port)
            state = f"down (port held by pid {owner[0]}: {owner[1]})" if owner else "down"
            memory = 0
        all_up &= state == "up"
        total += memory
        rows.append([service.name, endpoint, state, str(pid or "-"), _fmt_bytes(memory)])
    rows.append(["total", "", "", "", _fmt_bytes(total)])
    heads = ["service", "endpoint", "state", "pid", "memory"]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i == 4 else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    if header:
        print(f"Native lab stack ({STACK_DIR})")
    print(line(heads))
    print(rule)
    for row in rows[:-1]:
        print(line(row))
    print(rule)
    print(line(rows[-1]))
    if not all_up:
        print("Some services are down: start them with `make up` (logs in .stack/logs/).")
    return 0 if all_up else 1


# ------------------------------------------------------------------ entry point
COMMANDS = {"install": install, "up": up, "down": down, "status": status, "restart": restart}


def lab_services(lab: str, command: str) -> list[str]:
    """The services lab `lab` declares; for `install`, also Spark's jars when the lab runs Spark."""
    from harness.runtime.labs import find_lab

    found = find_lab(lab)
    names = list(found.services)
    if command == "install" and found.spark:
        names.append("spark-master")  # installing the master fetches the connector jars
    return names


# What the host needs when the servers run elsewhere: tests, labs and notebooks run PySpark on the
# host (local[2]) whichever stack serves Kafka, S3 and the databases, so Spark's jars are fetched.
HOST_SIDE_SERVICES = ["spark-master"]


def other_stack(command: str, names: list[str] | None = None, lab: str | None = None) -> int:
    """STACK=docker drives docker compose; STACK=external has nothing for us to start.

    Either way the host-side set-up (Spark's connector jars) is done by `install`, and by
    `up --lab N` for a lab that runs Spark, as on the native stack.
    """
    if command == "install" or (command == "up" and lab is not None):
        wanted = HOST_SIDE_SERVICES if lab is None else lab_services(lab, "install")
        host_side = [n for n in HOST_SIDE_SERVICES if n in wanted]
        if host_side:
            install(host_side, quiet=command == "up")
        if command == "install":
            print(f"STACK={stack()}: the servers themselves come from `make up`.")
            return 0
    if stack() == "external":
        print("STACK=external: the services run elsewhere (endpoints from the environment).")
        return 0 if command in ("up", "down", "restart") else status_external()
    from harness.ops import docker_stack

    # The compose stack starts as a whole (its services are wired to each other by name), also
    # for `up --lab N`: a lab's services are a subset of it.
    return docker_stack.main([{"restart": "up"}.get(command, command)])


def status_external() -> int:
    from harness.runtime.services import port_open, service_addresses

    down = [name for name, (h, p) in service_addresses().items() if not port_open(h, p)]
    for name, (host, port) in service_addresses().items():
        print(f"{name:<26} {host}:{port:<6} {'down' if name in down else 'up'}")
    return 1 if down else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.stack",
        description="The native lab stack: real servers as local processes on 127.0.0.1.",
    )
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument(
        "services",
        nargs="*",
        help="postgres, minio, clickhouse, kafka, connect, spark-master, spark-worker (default: all)",
    )
    parser.add_argument(
        "--lab",
        help="only what this lab needs (its labs/labNN_*/lab.toml): `up --lab 4` installs and starts it",
    )
    args = parser.parse_args(argv)
    names = args.services or None
    if args.lab is not None:
        try:
            names = lab_services(args.lab, args.command)
        except LookupError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 2
    if stack() != "native":
        try:
            return other_stack(args.command, names, args.lab)
        except StackError as exc:
            print(f"\nERROR: {exc}", file=sys.stderr)
            return 1
    try:
        if args.lab is not None and args.command == "up":
            # A lab's run does its own set-up: only the services (and Spark jars) it needs.
            install(lab_services(args.lab, "install"), quiet=True)
        return COMMANDS[args.command](names)
    except StackError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to continue where it stopped.")
        return 130
