"""Lab 09's live dashboard as a process: `make dashboard` runs it in the foreground, `make demo`
leaves one running in the background.

    python -m harness.ops.dashboard run [APP]   # Streamlit on 127.0.0.1:$DASHBOARD_PORT until Ctrl-C
    python -m harness.ops.dashboard stop        # stop the dashboard `make demo` left running

Both serve the page the same way (`streamlit_argv`): bound to 127.0.0.1, headless, no usage
statistics. The background one keeps its pid in `.stack/demo/dashboard.pid` and its output in
`.stack/demo/dashboard.log`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.ops.stack.base import StackError, pid_alive, spawn, tail, terminate
from harness.runtime.config import ROOT, STACK_DIR, setting
from harness.runtime.services import port_open
from harness.runtime.waits import wait_quietly

HOST = "127.0.0.1"
DEFAULT_APP = ROOT / "labs" / "lab09_alerts" / "dashboard.py"
PID_FILE = STACK_DIR / "demo" / "dashboard.pid"
LOG_FILE = STACK_DIR / "demo" / "dashboard.log"
START_TIMEOUT_S = 90.0


def dashboard_port() -> int:
    """The dashboard's port (`DASHBOARD_PORT` in infra/.env)."""
    return int(setting("DASHBOARD_PORT", "8501"))


def dashboard_url(port: int | None = None) -> str:
    return f"http://{HOST}:{port or dashboard_port()}"


def streamlit_argv(app: Path, port: int) -> list[str]:
    """`streamlit run` of `app` on 127.0.0.1:`port`, headless, without usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        f"--server.address={HOST}",
        f"--server.port={port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]


def answers(url: str) -> bool:
    """True when Streamlit's health endpoint at `url` says ok."""
    import requests

    try:
        return requests.get(f"{url}/_stcore/health", timeout=2).ok
    except requests.RequestException:
        return False


def running_pid() -> int | None:
    """The pid of the background dashboard, when one runs."""
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def stop() -> bool:
    """Stop the background dashboard (and its process group); True when one was running."""
    pid = running_pid()
    if pid is not None:
        terminate(pid)
    PID_FILE.unlink(missing_ok=True)
    return pid is not None


def start(app: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Serve `app` in the background (replacing a dashboard started earlier); (pid, URL) once it
    answers. A port taken by another process, or a page that does not come up, is a StackError."""
    stop()
    port = dashboard_port()
    if port_open(HOST, port):
        raise StackError(
            f"port {HOST}:{port} is taken (a `make dashboard` still running?). Stop that process, "
            "or choose another port: DASHBOARD_PORT=8502 make demo"
        )
    pid = spawn("dashboard", streamlit_argv(app, port), env or {}, LOG_FILE, PID_FILE)
    url = dashboard_url(port)

    def up() -> bool:
        if not pid_alive(pid):
            raise StackError(f"the dashboard exited during start. {LOG_FILE}:\n{tail(LOG_FILE)}")
        return answers(url)

    if not wait_quietly(up, START_TIMEOUT_S, every=0.5):
        stop()
        raise StackError(
            f"the dashboard did not answer on {url} within {START_TIMEOUT_S:.0f} s. "
            f"{LOG_FILE}:\n{tail(LOG_FILE)}"
        )
    return pid, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.dashboard", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve the dashboard in the foreground (make dashboard)")
    run.add_argument("app", nargs="?", type=Path, default=DEFAULT_APP)
    stop_ = sub.add_parser("stop", help="stop the dashboard `make demo` left running")
    stop_.add_argument("--quiet", action="store_true", help="say nothing when none is running")
    args = parser.parse_args(argv)
    if args.command == "stop":
        if stop():
            print("Stopped the dashboard `make demo` left running.")
        elif not args.quiet:
            print("No dashboard of `make demo` is running.")
        return 0
    argv_ = streamlit_argv(args.app, dashboard_port())
    os.execv(argv_[0], argv_)
    return 0  # not reached: the process is Streamlit now


if __name__ == "__main__":
    sys.exit(main())
