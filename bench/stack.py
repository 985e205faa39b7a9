"""Section 1 — the stack: `up` seconds (cold, restart, warm) and resident memory per service.

Start times are measured on a *separate* native stack so the lab stack other people use is never
stopped: `OPENSKY_STACK_DIR` points at a scratch folder (default /tmp/bench-stack, or
`BENCH_STACK_DIR`) whose `bin/` and `jars/` are links to the real stack's downloads (as after
`make setup`), and every port is moved by a fixed offset through the `*_PORT` variables that
harness.runtime.config honours. Per repeat:

- cold: no data directory (a first `make up` after `make setup`): initdb, Kafka storage format,
  bucket and database creation, every JVM's first start;
- restart: `down`, then `up` with the data kept (the usual first `make up` of a day);
- warm: `up` while everything runs (what `make lab-N` pays before its tests).

Memory is the resident set (RSS) of each service's process tree, after the cold start (idle) and,
for the lab stack itself, as it is now (after the other sections used it). RSS counts a page
shared by several processes (PostgreSQL's shared buffers) in each; PSS divides it among them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Section, log
from harness.runtime.config import ENV_FILE, ROOT, STACK_DIR, _read_env_file

TARGET_MIB = 3 * 1024
PORT_OFFSETS = (10000, 20000, 30000)
UP_TIMEOUT_S = 900
# Prints {service: [RSS bytes, PSS bytes]} of each running service's process tree (RSS as
# `make status` shows it; PSS shares shared pages out, so PostgreSQL's buffers count once).
RSS_SCRIPT = """
import json
from harness.ops.stack.base import pss_bytes, rss_bytes
from harness.ops.stack.manager import all_services, owned_pid

out = {}
for s in all_services():
    pid = owned_pid(s)
    out[s.name] = [rss_bytes(pid), pss_bytes(pid)] if pid else None
print(json.dumps(out))
"""
# `[3/7] Kafka broker: starting… done in 12 s (pid 42)`, or, when other output came in between,
# `[3/7] Kafka broker: done in 12 s (pid 42)`.
DONE_LINE = re.compile(r"\[\d+/\d+\] ([^:\n]+):[^\n]*?done in (\d+) s")


def scratch_dir() -> Path:
    return Path(os.environ.get("BENCH_STACK_DIR", "/tmp/bench-stack"))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_env() -> dict[str, str]:
    """`*_PORT` variables moved by the first offset whose ports are all free."""
    ports = {
        k: int(v)
        for k, v in _read_env_file(ENV_FILE).items()
        if k.endswith("_PORT") and v.isdigit()
    }
    for offset in PORT_OFFSETS:
        moved = {k: p + offset for k, p in ports.items()}
        if all(p < 65536 and _port_free(p) for p in moved.values()):
            return {k: str(p) for k, p in moved.items()}
    raise RuntimeError(f"no free set of ports for the scratch stack (offsets {PORT_OFFSETS})")


class ScratchStack:
    """A second native stack in `folder`, on other ports, sharing the real stack's downloads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            **port_env(),
            "OPENSKY_STACK_DIR": str(folder),
            "STACK": "native",
        }
        self.install_check_s: list[float] = []
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("bin", "jars"):
            link = folder / name
            if not link.exists():
                link.symlink_to(STACK_DIR / name)

    def command(self, *args: str, timeout: float = UP_TIMEOUT_S) -> tuple[float, str]:
        argv = [sys.executable, "-m", "harness.ops.stack", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"`harness.ops.stack {' '.join(args)}` on the scratch stack exited {proc.returncode}:\n"
                + (proc.stdout + proc.stderr)[-3000:]
            )
        return seconds, proc.stdout

    def make_up(self) -> tuple[float, str]:
        """What `make up` runs once the venv is current: `harness.ops.stack install` (checks that
        every download is there; with bin/ and jars/ linked it fetches nothing), then `up`."""
        s_install, out_install = self.command("install")
        s_up, out_up = self.command("up")
        self.install_check_s.append(s_install)
        return s_install + s_up, out_install + out_up

    def rss(self) -> dict[str, list[int] | None]:
        return rss_of(self.env)

    def wipe_data(self) -> None:
        """Remove data, logs and pid files (data dirs may be links to /var/tmp for PostgreSQL)."""
        for name in ("data", "logs", "run", "conf", "checkpoints"):
            path = self.folder / name
            if path.is_dir():
                for child in path.iterdir():
                    if child.is_symlink():
                        shutil.rmtree(child.resolve(), ignore_errors=True)
                        child.unlink()
                shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        self.wipe_data()
        shutil.rmtree(self.folder, ignore_errors=True)


def rss_of(env: dict[str, str] | None = None) -> dict[str, list[int] | None]:
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"could not read the stack's memory: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_service_seconds(output: str) -> dict[str, int]:
    return {title.strip(): int(s) for title, s in DONE_LINE.findall(output)}


def _mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def _record_rss(
    section: Section, key: str, label: str, samples: list[dict[str, list[int] | None]]
) -> None:
    """Per service RSS figures, the RSS total (the target) and the PSS total."""
    for name in samples[0]:
        fig = section.figure(f"{key}_{name}_mib", f"{label}: {name}", "MiB")
        for sample in samples:
            if sample.get(name) is not None:
                fig.add(_mib(sample[name][0]))
    total = section.figure(
        f"{key}_total_mib", f"{label}: total RSS", "MiB", target=("<=", TARGET_MIB)
    )
    pss = section.figure(f"{key}_total_pss_mib", f"{label}: total PSS", "MiB")
    for sample in samples:
        total.add(sum(_mib(v[0]) for v in sample.values() if v))
        pss.add(sum(_mib(v[1]) for v in sample.values() if v))
    if total.met is False:
        biggest = sorted(
            ((name, section.figures[f"{key}_{name}_mib"].median or 0) for name in samples[0]),
            key=lambda kv: -kv[1],
        )[:3]
        section.note(
            f"{label}: {total.median:,.0f} MiB > {TARGET_MIB:,} MiB. Largest: "
            + ", ".join(f"{n} {v:,.0f} MiB" for n, v in biggest)
        )


def run(section: Section, options: Any) -> None:
    # The lab stack as it is now: never started or stopped here.
    samples = []
    for _ in range(3):
        samples.append(rss_of())
        time.sleep(1)
    if all(v is None for v in samples[0].values()):
        section.note("the lab stack is not running: no memory figures for it")
    else:
        _record_rss(section, "lab_stack_rss", "lab stack in use", samples)
    if options.quick:
        section.note("--quick: start times skipped (they need a second stack, minutes each)")
        return

    repeats = options.repeats_or(3)
    stack = ScratchStack(scratch_dir())
    section.tables["scratch_stack"] = {
        "folder": str(stack.folder),
        "ports": ", ".join(f"{k}={v}" for k, v in stack.env.items() if k.endswith("_PORT")),
    }
    cold = section.figure("cold_up_s", "cold `up` (no data: first start)", "s")
    restart = section.figure("restart_up_s", "restart: `up` after `down`, data kept", "s")
    warm = section.figure("warm_up_s", "warm `up` (all running: nothing to start)", "s")
    down = section.figure("down_s", "`down`", "s")
    per_service: dict[str, dict[str, list[int]]] = {}
    idle: list[dict[str, int | None]] = []
    try:
        for i in range(repeats):
            stack.command("down")
            stack.wipe_data()
            s, out = stack.make_up()
            cold.add(s)
            for name, secs in per_service_seconds(out).items():
                per_service.setdefault(name, {"cold": [], "restart": []})["cold"].append(secs)
            time.sleep(5)  # let the JVMs settle before reading memory
            idle.append(stack.rss())
            s, _ = stack.make_up()
            warm.add(s)
            s, _ = stack.command("down")
            down.add(s)
            s, out = stack.make_up()
            restart.add(s)
            for name, secs in per_service_seconds(out).items():
                per_service.setdefault(name, {"cold": [], "restart": []})["restart"].append(secs)
            s, _ = stack.make_up()
            warm.add(s)
            log(
                f"stack run {i + 1}/{repeats}: cold {cold.runs[-1]:.0f} s, restart "
                f"{restart.runs[-1]:.0f} s, warm {warm.runs[-1]:.1f} s"
            )
    finally:
        try:
            stack.command("down")
        finally:
            stack.remove()
    _record_rss(section, "idle_rss", "memory after a cold start (idle)", idle)
    section.tables["seconds_per_service (as `up` prints them, whole seconds)"] = {
        name: {
            "cold median": sorted(v["cold"])[len(v["cold"]) // 2] if v["cold"] else None,
            "restart median": sorted(v["restart"])[len(v["restart"]) // 2]
            if v["restart"]
            else None,
        }
        for name, v in per_service.items()
    }
    check = section.figure(
        "install_check_s", "of which `harness.ops.stack install` (nothing to do)", "s"
    )
    for value in stack.install_check_s:
        check.add(value)
    section.note(
        "An `up` figure is `make up` without make: `python -m harness.ops.stack install` (the "
        "`setup` prerequisite: every download present, nothing fetched) then "
        "`python -m harness.ops.stack up`, until every service answers."
    )
    section.note(
        f"{repeats} cold and {repeats} restart starts, {2 * repeats} warm `up`s on a scratch stack "
        f"({stack.folder}, ports moved; downloads linked from {STACK_DIR}); the OS page cache "
        "was warm (the lab stack runs the same jars), so a cold start after a reboot is slower."
    )
