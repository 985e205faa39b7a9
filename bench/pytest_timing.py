"""A pytest plugin for the loop benchmark: where a graded suite's time goes.

Loaded with `-p bench.pytest_timing`; writes JSON to the file named by `BENCH_PYTEST_JSON`:
time stamps of configure / collection end / session end, the sum of setup, call and teardown
phases, set-up time per fixture (without the fixtures it depends on), outcomes, slowest calls.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict

import pytest

_stamps: dict[str, float] = {}
_phases: dict[str, float] = defaultdict(float)
_fixtures: dict[str, float] = defaultdict(float)
_calls: list[tuple[float, str]] = []
_outcomes: Counter[str] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    _stamps["configure"] = time.time()


def pytest_collection_finish(session: pytest.Session) -> None:
    _stamps["collected"] = time.time()
    _stamps["tests"] = len(session.items)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    t0 = time.perf_counter()
    yield
    _fixtures[fixturedef.argname] += time.perf_counter() - t0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _phases[report.when] += report.duration
    if report.when == "call":
        _calls.append((report.duration, report.nodeid))
        _outcomes[report.outcome] += 1
    elif report.outcome != "passed":
        _outcomes[f"{report.when} {report.outcome}"] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("BENCH_PYTEST_JSON")
    if not path:
        return
    _stamps["finished"] = time.time()
    doc = {
        "stamps": _stamps,
        "phases": dict(_phases),
        "fixtures": dict(sorted(_fixtures.items(), key=lambda kv: -kv[1])),
        "slowest_calls": [[round(d, 2), n] for d, n in sorted(_calls, reverse=True)[:5]],
        "outcomes": dict(_outcomes),
    }
    with open(path, "w") as fh:
        json.dump(doc, fh)
