"""`make doctor`: is this machine ready for the labs? Every check says OK, WARN or FAIL, and how to fix it.

    python -m harness.ops.doctor [--thorough]

Checks: Python, Java (17+), Maven and Go (used by set-up), free disk and memory, whether a Docker
engine answers (and so which stack `STACK=auto` picks), whether each port of the stack is free, ours
or taken by another program (named, with the variable that moves the lab's service), and whether the
set-up steps are complete (venv packages, jars, the MinIO binary, PostgreSQL's server binaries).

Exit code 1 when something blocks the labs (any FAIL), 0 otherwise (warnings included). Ports and
folders come from `harness.runtime.config`, so environment overrides (POSTGRES_PORT=…, OPENSKY_STACK_DIR=…)
are honoured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.text import Text

from harness.ops import ports
from harness.ops.stack.jars import MANIFEST, broken_jars
from harness.ops.stack.postgres import pg_bin_dir
from harness.runtime.config import ROOT, STACK_DIR, docker_engine_answers, setting

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "--"

MIN_DISK_GB = 5.0
BLOCKING_DISK_GB = 1.0
MIN_MEMORY_GB = 4.0
PYTHON_SUPPORTED = ((3, 11), (3, 12))
JAVA_MIN = 17
JAVA_TESTED = (17, 21)

VENV = ROOT / os.environ.get("VENV", ".venv")
JARS_DIR = STACK_DIR / "jars"
RUN_DIR = STACK_DIR / "run"
MINIO_BINARY = STACK_DIR / "bin" / "minio"

# Import name -> what it is for (the packages of pyproject.toml that lab code and tests import).
PACKAGES = {
    "pyspark": "Spark",
    "chdb": "ClickHouse engine (native stack)",
    "confluent_kafka": "Kafka client",
    "clickhouse_connect": "ClickHouse client",
    "minio": "MinIO client",
    "psycopg": "PostgreSQL client",
    "pyarrow": "Arrow / Parquet / S3",
    "pandas": "pandas",
    "numpy": "numpy",
    "requests": "HTTP client",
    "yaml": "PyYAML",
    "pytest": "pytest",
    "pytest_docker": "pytest-docker",
    "pytest_timeout": "pytest-timeout",
    "chispa": "chispa",
    "nbval": "nbval",
    "jupyterlab": "JupyterLab",
}

# Jar folders under .stack/jars and whether the docker stack needs them too (Spark's extra jars
# serve every local Spark session; Kafka's and Connect's only the native servers).
JAR_FOLDERS = {
    "kafka": ("Kafka broker jars", False),
    "connect": ("Kafka Connect jars", False),
    "connect-plugins": ("Debezium connector plugin", False),
    "spark": ("Spark's extra jars (Kafka source, s3a, JDBC)", True),
}

SETUP_FIX = "run `make setup` (it fetches or builds what is missing and verifies it)"


@dataclass
class Check:
    section: str
    name: str
    level: str
    detail: str
    fix: str = ""


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def native_stack() -> tuple[str, str | None]:
    """(stack in use, error): the stack `harness.runtime.config` will pick, without raising."""
    chosen = setting("STACK", "auto").lower()
    if chosen == "auto":
        return ("docker" if docker_engine_answers() else "native"), None
    if chosen not in ("native", "docker", "external"):
        return "native", f"STACK={chosen!r} is not one of auto, native, docker, external"
    return chosen, None


# ------------------------------------------------------------------ system
def check_python() -> Check:
    python = VENV / "bin" / "python"
    where = python if python.exists() else Path(sys.executable)
    if where == python and Path(sys.executable).resolve() != python.resolve():
        result = _run([str(python), "-c", "import sys; print(*sys.version_info[:3])"])
        parts = result.stdout.split() if result and result.returncode == 0 else []
        version = tuple(int(p) for p in parts) if parts else None
    else:
        version = tuple(sys.version_info[:3])
    if version is None:
        return Check(
            "System",
            "Python",
            FAIL,
            f"{where} does not run",
            "recreate the venv: rm -rf .venv && make setup",
        )
    text = ".".join(map(str, version))
    if tuple(version[:2]) in PYTHON_SUPPORTED:
        return Check("System", "Python", OK, f"Python {text} ({where})")
    return Check(
        "System",
        "Python",
        FAIL,
        f"Python {text} ({where}); the labs need 3.11 or 3.12 (PySpark 4.0, chDB)",
        "install Python 3.11 or 3.12, then: rm -rf .venv && make setup PYTHON=python3.11",
    )


def java_binary() -> tuple[str | None, str]:
    """(path of the java the stack uses, how it was found) — JAVA_HOME first, then PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return (str(candidate) if candidate.exists() else None), f"JAVA_HOME={home}"
    found = shutil.which("java")
    return found, "PATH"


def check_java() -> Check:
    java, source = java_binary()
    fix_install = (
        "install a Java 17 JDK (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jdk-headless; "
        "macOS: brew install openjdk@17) and set JAVA_HOME to it"
    )
    if java is None:
        detail = (
            f"{source} has no bin/java" if source.startswith("JAVA_HOME") else "no `java` on PATH"
        )
        return Check("System", "Java", FAIL, detail, fix_install)
    result = _run([java, "-version"])
    text = (result.stderr + result.stdout) if result else ""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return Check("System", "Java", FAIL, f"{java} -version did not answer", fix_install)
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    first = text.strip().splitlines()[0] if text.strip() else ""
    detail = f"Java {major} ({java}, from {source}): {first}"
    if major < JAVA_MIN:
        return Check(
            "System",
            "Java",
            FAIL,
            detail + f"; PySpark 4.0 needs Java {JAVA_MIN} or newer",
            fix_install,
        )
    if major not in JAVA_TESTED:
        return Check(
            "System",
            "Java",
            WARN,
            detail + "; the labs are tested on Java 17 and 21",
            "if Spark fails to start, point JAVA_HOME at a Java 17 JDK",
        )
    return Check("System", "Java", OK, detail)


def check_tool(name: str, argv: list[str], needed: bool, why: str, fix: str) -> Check:
    """A build tool set-up uses: FAIL when missing and still `needed`, WARN when missing and done."""
    path = shutil.which(argv[0])
    if path is None:
        if needed:
            return Check("System", name, FAIL, f"`{argv[0]}` not found; {why}", fix)
        return Check(
            "System",
            name,
            WARN,
            f"`{argv[0]}` not found (set-up is already done, so only a re-fetch needs it)",
            fix,
        )
    result = _run(argv)
    first = ""
    if result is not None:
        lines = _strip_ansi(result.stdout + result.stderr).strip().splitlines()
        first = lines[0] if lines else ""
    return Check("System", name, OK, f"{first or argv[0]} ({path})")


def check_disk() -> Check:
    where = STACK_DIR if STACK_DIR.exists() else ROOT
    free_gb = shutil.disk_usage(where).free / 1e9
    detail = f"{free_gb:.1f} GB free in {where}"
    fix = (
        "free some disk space: set-up downloads ~1 GB and the services keep data in .stack/ "
        "(`make reset` wipes the stack's data; `make clean` removes reports)"
    )
    if free_gb < BLOCKING_DISK_GB:
        return Check("System", "Free disk", FAIL, detail + f" (< {BLOCKING_DISK_GB:.0f} GB)", fix)
    if free_gb < MIN_DISK_GB:
        return Check("System", "Free disk", WARN, detail + f" (< {MIN_DISK_GB:.0f} GB)", fix)
    return Check("System", "Free disk", OK, detail)


def check_memory() -> Check:
    memory = psutil.virtual_memory()
    available = memory.available / 2**30
    total = memory.total / 2**30
    detail = f"{available:.1f} GiB available of {total:.1f} GiB"
    if available < MIN_MEMORY_GB:
        return Check(
            "System",
            "Free memory",
            WARN,
            detail
            + f" (< {MIN_MEMORY_GB:.0f} GiB; the stack uses about 2 GiB, Spark tests 1-2 more)",
            "close other programs (browsers, IDEs), or stop the stack when you do not use it: "
            "make down",
        )
    return Check("System", "Free memory", OK, detail)


# ------------------------------------------------------------------ which stack
def check_docker() -> tuple[Check, str]:
    chosen = setting("STACK", "auto").lower()
    stack, error = native_stack()
    if error:
        return Check(
            "Stack", "STACK", FAIL, error, "set STACK=auto (default), native or docker"
        ), stack
    engine = docker_engine_answers()
    client = shutil.which("docker") is not None
    if engine:
        seen = "a Docker engine answers"
    elif client:
        seen = "no Docker engine answers (the docker client is installed)"
    else:
        seen = "no Docker engine (docker is not installed)"
    if chosen == "auto":
        detail = f"{seen}: STACK=auto picks the {stack} stack"
        if stack == "native":
            detail += " (servers as local processes, `make up`)"
        else:
            detail += " (infra/docker-compose.yml; `make up STACK=native` for local processes)"
        return Check("Stack", "Docker / STACK", OK, detail), stack
    if chosen == "docker" and not engine:
        return Check(
            "Stack",
            "Docker / STACK",
            FAIL,
            f"STACK=docker, but {seen}",
            "start the Docker engine (Docker Desktop, or `sudo systemctl start docker`), "
            "or use the native stack: unset STACK (auto) or STACK=native",
        ), stack
    return Check("Stack", "Docker / STACK", OK, f"STACK={chosen} ({seen})"), stack


def stack_processes() -> dict[str, int]:
    """Service -> pid, for the pid files in .stack/run whose process is alive."""
    alive: dict[str, int] = {}
    for pid_file in sorted(RUN_DIR.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        alive[pid_file.stem] = pid
    return alive


def check_ports(stack: str) -> Iterator[Check]:
    if stack == "external":
        yield Check("Ports", "stack ports", INFO, "STACK=external: the services are not local")
        return
    try:
        wanted = ports.stack_ports()
    except ValueError as exc:
        yield Check(
            "Ports",
            "port variables",
            FAIL,
            f"a port variable is not a number: {exc}",
            "fix the *_PORT values in infra/.env or in the environment",
        )
        return
    held = ports.listeners()
    by_port: dict[int, list[str]] = {}
    for variable, (_service, port) in wanted.items():
        by_port.setdefault(port, []).append(variable)
    taken = set(held) | {p for p in by_port}
    for variable, (service, port) in wanted.items():
        name = f"{port:<5} {variable}"
        if len(by_port[port]) > 1:
            others = ", ".join(v for v in by_port[port] if v != variable)
            yield Check(
                "Ports",
                name,
                FAIL,
                f"port {port} is also set for {others}",
                f"give {variable} its own port, e.g. {variable}={ports.free_port(taken)}",
            )
            continue
        owner = held.get(port) or ports.port_owner(port)
        if owner is None:
            yield Check("Ports", name, OK, f"free ({service} will listen here)")
            continue
        pid, program = owner
        ours = ports.stack_service_of(pid, RUN_DIR)
        if ours is not None:
            yield Check("Ports", name, OK, f"in use by the lab stack ({ours}, pid {pid})")
            continue
        if stack == "docker" and "docker" in program:
            yield Check("Ports", name, OK, f"in use by the docker stack ({program})")
            continue
        if len(program) > 80:
            program = program[:77] + "..."
        who = f"pid {pid}: {program}" if pid is not None else program
        suggestion = ports.free_port(taken)
        yield Check(
            "Ports",
            name,
            FAIL,
            f"needed by {service}, but taken by another program — {who}",
            f"stop that program, or move the lab's {service} to a free port: set "
            f"{variable}={suggestion} in infra/.env (or `export {variable}={suggestion}`)",
        )


# ------------------------------------------------------------------ set-up
def _pyproject_stamp() -> Path:
    digest = hashlib.md5((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    return VENV / f".installed-{digest}"


# Imports every package (a broken install fails here, not in a lab); the ones that are only
# programs (JupyterLab) are looked up, not imported, to keep the doctor quick.
IMPORT_PROBE = """
import importlib, importlib.util, json, sys
failed = {}
for name in sys.argv[1:]:
    lookup = name.startswith("?")
    name = name.lstrip("?")
    try:
        if lookup:
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"No module named {name!r}")
        else:
            importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"[:200]
print(json.dumps(failed))
"""
LOOKUP_ONLY = {"jupyterlab"}


def start_import_probe() -> subprocess.Popen | None:
    """Start importing the venv's packages in the venv's Python (runs while other checks run)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    names = [f"?{n}" if n in LOOKUP_ONLY else n for n in PACKAGES]
    try:
        return subprocess.Popen(
            [str(python), "-c", IMPORT_PROBE, *names],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError:
        return None


def check_venv(probe: subprocess.Popen | None) -> Iterator[Check]:
    python = VENV / "bin" / "python"
    if not python.exists():
        yield Check("Set-up", "Python packages", FAIL, f"no virtualenv at {VENV}", SETUP_FIX)
        return
    failed = None
    if probe is not None:
        try:
            stdout, _ = probe.communicate(timeout=180)
            failed = json.loads(stdout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            probe.kill()
            probe.communicate()
    if failed is None:
        yield Check(
            "Set-up",
            "Python packages",
            FAIL,
            f"{python} could not check its packages",
            "recreate the venv: rm -rf .venv && make setup",
        )
        return
    if failed:
        names = "; ".join(f"{name} ({err})" for name, err in failed.items())
        yield Check("Set-up", "Python packages", FAIL, f"cannot import: {names}", SETUP_FIX)
    else:
        yield Check("Set-up", "Python packages", OK, f"{len(PACKAGES)} packages import in {VENV}")
    if (ROOT / "pyproject.toml").exists() and not _pyproject_stamp().exists():
        yield Check(
            "Set-up",
            "package versions",
            WARN,
            "pyproject.toml changed since `make setup` last installed the packages "
            "(or the venv was made by hand)",
            "run `make setup` to install the pinned versions",
        )


def jar_folder_states(thorough: bool = False) -> dict[str, tuple[int, list[str], bool]]:
    """Folder -> (number of jars, broken jars, marked complete by set-up)."""
    states = {}
    for folder in JAR_FOLDERS:
        path = JARS_DIR / folder
        jars = list(path.rglob("*.jar")) if path.is_dir() else []
        marked = any(path.rglob(MANIFEST)) if path.is_dir() else False
        bad = [jar.name for jar in broken_jars(path, thorough)] if jars else []
        states[folder] = (len(jars), bad, marked)
    return states


def check_jars(stack: str, states: dict[str, tuple[int, list[str], bool]]) -> Iterator[Check]:
    for folder, (title, docker_needs) in JAR_FOLDERS.items():
        name = f"jars/{folder}"
        path = JARS_DIR / folder
        count, bad, marked = states[folder]
        if stack != "native" and not docker_needs:
            yield Check("Set-up", name, INFO, f"{title}: not needed by the {stack} stack")
            continue
        if count == 0:
            yield Check("Set-up", name, FAIL, f"{title}: no jars in {path}", SETUP_FIX)
        elif bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            yield Check(
                "Set-up",
                name,
                FAIL,
                f"{title}: {len(bad)} broken (truncated?) jar(s): {shown}",
                SETUP_FIX,
            )
        elif not marked:
            yield Check(
                "Set-up",
                name,
                WARN,
                f"{title}: {count} jars, but set-up did not finish verifying them (interrupted?)",
                SETUP_FIX,
            )
        else:
            yield Check("Set-up", name, OK, f"{title}: {count} jars, all readable")


def minio_state() -> tuple[bool, str]:
    """(works, detail) for the MinIO server binary."""
    if not MINIO_BINARY.exists():
        return False, f"no MinIO binary at {MINIO_BINARY}"
    if not os.access(MINIO_BINARY, os.X_OK):
        return False, f"{MINIO_BINARY} is not executable"
    result = _run([str(MINIO_BINARY), "--version"], timeout=30)
    out = (result.stdout if result else "").strip()
    if result is None or result.returncode != 0 or "minio version" not in out.lower():
        return False, f"{MINIO_BINARY} --version fails (a broken or partial build?)"
    return True, out.splitlines()[0]


def check_minio(stack: str, state: tuple[bool, str]) -> Check:
    if stack != "native":
        return Check("Set-up", "MinIO binary", INFO, f"not needed by the {stack} stack")
    works, detail = state
    if works:
        return Check("Set-up", "MinIO binary", OK, detail)
    return Check(
        "Set-up",
        "MinIO binary",
        FAIL,
        detail,
        f"{SETUP_FIX}; or put the official MinIO server binary at {MINIO_BINARY}",
    )


def check_postgres(stack: str) -> Check:
    if stack != "native":
        return Check("Set-up", "PostgreSQL server", INFO, f"not needed by the {stack} stack")
    fix = (
        "run `make setup` as root (it runs apt-get install postgresql), or: "
        "sudo apt-get install -y postgresql   (another location: set PG_BIN_DIR)"
    )
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        return Check(
            "Set-up", "PostgreSQL server", FAIL, "no PostgreSQL server binaries found", fix
        )
    missing = [b for b in ("postgres", "initdb") if not (bin_dir / b).exists()]
    if missing:
        return Check(
            "Set-up", "PostgreSQL server", FAIL, f"{bin_dir} lacks {', '.join(missing)}", fix
        )
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return Check(
                "Set-up",
                "PostgreSQL server",
                FAIL,
                "running as root, but there is no `postgres` OS user to run the server as",
                fix,
            )
    result = _run([str(bin_dir / "postgres"), "--version"])
    version = result.stdout.strip() if result and result.returncode == 0 else "version unknown"
    return Check("Set-up", "PostgreSQL server", OK, f"{version} ({bin_dir})")


def check_running(stack: str) -> Check:
    if stack != "native":
        return Check("Stack", "running", INFO, f"see `make status` for the {stack} stack")
    alive = stack_processes()
    if not alive:
        return Check("Stack", "running", INFO, "the native stack is not running (`make up`)")
    names = ", ".join(sorted(alive))
    return Check(
        "Stack", "running", INFO, f"{len(alive)} services of ours run: {names} (`make status`)"
    )


# ------------------------------------------------------------------ the report
def run_checks(thorough: bool = False) -> Iterator[Check]:
    """Every check, in report order (yields as it goes, so the report is never silent for long)."""
    probe = start_import_probe()
    yield check_python()
    yield check_java()
    yield check_disk()
    yield check_memory()
    docker, stack = check_docker()
    if thorough:
        yield Check("System", "jar checksums", INFO, "checking every jar entry (up to a minute)…")
    jars = jar_folder_states(thorough)
    minio = minio_state() if stack == "native" else (True, "")
    jars_missing = any(
        count == 0 or bad or not marked
        for folder, (count, bad, marked) in jars.items()
        if stack == "native" or JAR_FOLDERS[folder][1]
    )
    yield check_tool(
        "Maven",
        ["mvn", "-v"],
        jars_missing,
        "set-up fetches the jars with Maven",
        "install Maven 3.8+ (Debian/Ubuntu: sudo apt-get install -y maven; macOS: brew install maven)",
    )
    yield check_tool(
        "Go",
        ["go", "version"],
        stack == "native" and not minio[0],
        "set-up builds the MinIO server with Go",
        "install Go 1.24+ (https://go.dev/dl/), or put the official MinIO binary at "
        f"{MINIO_BINARY}",
    )
    yield docker
    yield check_running(stack)
    yield from check_ports(stack)
    yield from check_venv(probe)
    yield from check_jars(stack, jars)
    yield check_minio(stack, minio)
    yield check_postgres(stack)


STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red", INFO: "dim"}


def report(checks: Iterator[Check], out=sys.stdout) -> list[Check]:
    """Print the checks as they come (coloured on a terminal, plain in logs); returns them."""
    # soft_wrap: long lines stay one line (CI logs and the tests read them), never re-wrapped.
    console = Console(file=out, highlight=False, soft_wrap=True)
    done: list[Check] = []
    section = ""
    console.print(f"OpenSky labs doctor — {ROOT}  (stack folder: {STACK_DIR})", markup=False)
    for check in checks:
        if check.section != section:
            section = check.section
            console.print(f"\n{section}", markup=False)
        level = Text(f"{check.level:<4}", style=STYLES[check.level])
        console.print(Text.assemble("  ", level, f"  {check.name:<30} {check.detail}"))
        if check.fix and check.level in (WARN, FAIL):
            console.print(f"  {'':<4}  {'':<30} fix: {check.fix}", markup=False)
        done.append(check)
    fails = [c for c in done if c.level == FAIL]
    warns = [c for c in done if c.level == WARN]
    console.print()
    if fails:
        console.print(
            f"{len(fails)} problem(s) block the labs (FAIL), {len(warns)} warning(s). "
            "Apply the fixes above, then run `make doctor` again.",
            markup=False,
        )
    elif warns:
        console.print(f"Ready for the labs, with {len(warns)} warning(s) above.", markup=False)
    else:
        console.print("All good: ready for the labs (`make lab-1`).", markup=False)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.doctor",
        description="Check this machine for the labs; every problem comes with its fix.",
    )
    parser.add_argument(
        "--thorough", action="store_true", help="also verify every jar entry's checksum (slower)"
    )
    args = parser.parse_args(argv)
    done = report(run_checks(thorough=args.thorough))
    return 1 if any(c.level == FAIL for c in done) else 0


if __name__ == "__main__":
    sys.exit(main())
