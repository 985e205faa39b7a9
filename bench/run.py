"""Run the benchmarks and write `results.json` and `results.md`.

    python -m bench                          # every section, full scale (tens of minutes)
    python -m bench --quick                  # a smoke run: a few seconds per section
    python -m bench --sections kafka,clickhouse --quick --out /tmp/b
    python -m bench --sections streaming --merge   # re-run one section into the results
    python -m bench --cleanup                      # remove bench_* leftovers of a killed run

Sections: stack, loop, streaming, batch, clickhouse, kafka (`clickhouse` is the ClickHouse half of
`batch` alone; `batch` runs it too). The stack must be up (`make up`) except for `stack`'s cold
start, which uses a separate stack directory and ports. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR,
    Section,
    cpu_pressure,
    load_average,
    log,
    machine,
    versions,
)

SECTIONS: dict[str, str] = {
    "stack": "1. Stack: start time and memory",
    "loop": "2. Student loop: graded suites against solutions/",
    "streaming": "3. Streaming: Lab 02, Kafka to ClickHouse",
    "batch": "4. Batch: Lab 01 job vs the same aggregation in ClickHouse",
    "clickhouse": "4b. Batch aggregation in ClickHouse alone",
    "kafka": "5. Kafka: Lab 03 producer vs confluent-kafka's best case",
}
# Run order: `stack` last, so the lab stack's memory is read after the other sections used it.
DEFAULT_SECTIONS = ("kafka", "batch", "streaming", "loop", "stack")
# The on/off options of `python -m bench`.
FLAGS = {
    "--quick": "smoke run: small inputs, 2 repeats",
    "--cleanup": "only remove every bench_* topic, database, table and object (an interrupted run)",
    "--merge": "keep the other sections of the results.json already in --out (re-run one section)",
}


@dataclass
class Options:
    quick: bool
    repeats: int | None  # None: each section's own default
    batch_rows: int
    out: Path

    def repeats_or(self, full: int, quick: int = 2) -> int:
        if self.repeats is not None:
            return self.repeats
        return quick if self.quick else full


def _runner(name: str) -> Callable[[Section, Options], None]:
    if name == "kafka":
        from bench import producer

        return lambda s, o: producer.run(s, o.quick, o.repeats_or(5))
    if name == "clickhouse":
        from bench import batch

        return lambda s, o: batch.run_clickhouse_only(s, o)
    if name == "batch":
        from bench import batch

        return lambda s, o: batch.run(s, o)
    if name == "loop":
        from bench import loop

        return lambda s, o: loop.run(s, o)
    if name == "stack":
        from bench import stack

        return lambda s, o: stack.run(s, o)
    if name == "streaming":
        from bench import streaming

        return lambda s, o: streaming.run(s, o)
    raise ValueError(name)


def run_sections(names: list[str], options: Options, merge: bool = False) -> dict[str, Any]:
    started = time.time()
    doc: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "quick" if options.quick else "full",
        "machine": machine(),
        "versions": versions(),
        "sections": {},
    }
    previous = options.out / "results.json"
    if merge and previous.exists():  # keep the other sections of an earlier run
        earlier = json.loads(previous.read_text())
        doc["sections"] = {k: v for k, v in earlier["sections"].items() if k not in names}
        doc["merged_from"] = earlier.get("merged_from") or earlier["generated"]
        doc["rerun"] = sorted(set(earlier.get("rerun", [])) | set(names))
    for name in names:
        section = Section(name, SECTIONS[name])
        log(f"section {name}: {section.title}")
        t0 = time.perf_counter()
        try:
            _runner(name)(section, options)
        except Exception as exc:  # one failing section must not lose the others' figures
            section.error = f"{type(exc).__name__}: {exc}"
            log(f"section {name} failed:\n{traceback.format_exc()}")
        section.seconds = time.perf_counter() - t0
        section.note(
            f"load average (1/5/15 min) after this section: {load_average()}; {cpu_pressure()}"
        )
        doc["sections"][name] = section.as_dict()
        # Shown in the order (1 stack ... 5 kafka), whatever the run order.
        doc["sections"] = {k: doc["sections"][k] for k in SECTIONS if k in doc["sections"]}
        write(doc, options.out)  # results so far survive an interrupted run
    doc["machine"]["load_average_end"] = load_average()
    doc["seconds"] = round(time.time() - started, 1)
    write(doc, options.out)
    return doc


def write(doc: dict[str, Any], out: Path) -> None:
    from bench.report import markdown

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(doc))


def _terminate_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every section removes what it created."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate_cleanly)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, from: {', '.join(SECTIONS)} (default: {','.join(DEFAULT_SECTIONS)})",
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (override)")
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="state vectors for the batch section (default 5,000,000; --quick 100,000)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="folder for results.{json,md}")
    for flag, help_text in FLAGS.items():
        parser.add_argument(flag, action="store_true", help=help_text)
    args = parser.parse_args(argv)
    if args.cleanup:
        from bench.cleanup import cleanup

        for kind, names in cleanup().items():
            print(
                f"{kind}: {len(names)} removed" + (f" ({', '.join(names[:5])}…)" if names else "")
            )
        return 0
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    batch_rows = args.batch_rows or (100_000 if args.quick else 5_000_000)
    options = Options(args.quick, args.repeats, batch_rows, args.out)
    doc = run_sections(names, options, merge=args.merge)
    failed = [n for n, s in doc["sections"].items() if s["error"]]
    log(f"wrote {options.out / 'results.md'} and results.json in {doc['seconds']:.0f} s")
    if failed:
        log(f"sections with errors: {', '.join(failed)}")
        return 1
    return 0
