"""The grading harness as a pytest plugin: target choice, points, score table, results.json, spark.

Registered from the root `conftest.py` (`pytest_plugins = ["harness.grading.pytest_plugin"]`).
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.grading import loader
from harness.grading.results import (
    ERROR,
    FAILED,
    NOT_RUN,
    PASSED,
    RUNNING,
    SKIPPED,
    TIMEOUT,
    GradedTest,
    RunInfo,
    lab_of,
    part_of,
    render_table,
    to_gradescope,
    trim,
    write_json,
)

TIMEOUT_TEXT = "from pytest-timeout"
SPARK_CLEANUP_SECONDS = 60
WHERE_LINE = re.compile(r"^\s*\+\s+where ")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "OpenSky labs grading")
    group.addoption(
        "--target",
        choices=loader.TARGETS,
        default="labs",
        help="implementation the graded suites import: labs (student copy, default) or solutions",
    )
    group.addoption(
        "--labs-dir",
        default=None,
        metavar="PATH",
        help="grade another copy of labs/ (e.g. a student's): import PATH/<lab>/<module>.py",
    )
    group.addoption(
        "--grade-json",
        default=None,
        metavar="PATH",
        help="write Gradescope results.json to PATH (kept up to date while the run goes on)",
    )
    group.addoption(
        "--no-score-table",
        action="store_true",
        default=False,
        help="do not print the score table at the end (for tools that print their own)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "points(n): a graded test worth n points; the lab comes from the labNN_* folder and the "
        "part from the name test_partX_...",
    )
    labs_dir = config.getoption("--labs-dir")
    if labs_dir is not None and not Path(labs_dir).is_dir():
        raise pytest.UsageError(f"--labs-dir {labs_dir}: no such folder")
    try:
        target = loader.set_target(config.getoption("--target"), labs_dir, _course_root(config))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    json_path = config.getoption("--grade-json")
    grader = Grader(
        config,
        target=target,
        json_path=Path(json_path).resolve() if json_path else None,
        table=not config.getoption("--no-score-table"),
    )
    config.pluginmanager.register(grader, "opensky-grader")


def _course_root(config: pytest.Config) -> Path:
    """The repository whose labs/ and solutions/ are graded: pytest's rootdir when it has them."""
    root = config.rootpath
    if (root / "labs").is_dir() or (root / "solutions").is_dir():
        return root
    return loader.ROOT


def pytest_unconfigure(config: pytest.Config) -> None:
    loader.set_target()


class Grader:
    """Collects the outcome of every points-marked test and writes the table and results.json."""

    def __init__(
        self, config: pytest.Config, target: loader.Target, json_path: Path | None, table: bool
    ) -> None:
        self.config = config
        self.tests: dict[str, GradedTest] = {}
        self.info = RunInfo(
            target=target.name, labs_dir=str(target.labs_dir) if target.labs_dir else ""
        )
        self.json_path = json_path
        self.table = table
        self.started = time.monotonic()
        self._nudge: _TimeoutNudge | None = None

    def save(self) -> None:
        """Rewrite results.json (atomically) with what is known so far."""
        if self.json_path is None:
            return
        self.info.execution_time = time.monotonic() - self.started
        try:
            write_json(self.json_path, to_gradescope(list(self.tests.values()), self.info))
        except OSError as exc:  # a report that cannot be written must not hide the test results
            sys.stderr.write(f"grading: could not write {self.json_path}: {exc}\n")

    # -- collection

    @pytest.hookimpl(trylast=True)  # trylast: after -k/-m have deselected items
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            points = _points(item)
            if points is None:
                continue
            self.tests[item.nodeid] = GradedTest(
                nodeid=item.nodeid,
                lab=lab_of(item.path),
                part=part_of(item.name),
                points=points,
                doc=_docstring(item),
                location=f"{_relative(item.path, self.config)}:{(item.location[1] or 0) + 1}",
            )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            where = report.nodeid or "."
            message = trim(str(report.longrepr), 15, 1500)
            self.info.collection_errors.append({"where": where, "message": message})

    def pytest_collection_finish(self) -> None:
        self.save()

    # -- running

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        test = self.tests.get(nodeid)
        if test is not None:
            test.status = RUNNING
            self.save()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, call: pytest.CallInfo[None]):
        # The phase is over once its report is being made: a nudge must not interrupt the
        # report itself (formatting a long traceback takes seconds on a busy machine).
        if self._nudge is not None and self._nudge.expired():
            self._nudge.stop()
        report = yield
        excinfo = call.excinfo
        if excinfo is not None and excinfo.errisinstance(loader.LabImportError):
            # The message names the file and line; a traceback into the harness helps nobody.
            report.longrepr = str(excinfo.value)
        elif excinfo is not None and TIMEOUT_TEXT in str(excinfo.value):
            _recover_spark_after_timeout()
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test = self.tests.get(report.nodeid)
        if test is None:
            return
        test.duration = round(test.duration + report.duration, 3)
        if report.when == "call" and report.passed:
            if test.status == RUNNING:
                test.status = PASSED
            return
        if report.passed or test.status not in (RUNNING, PASSED):
            return  # keep the first problem: a teardown error after a failure adds nothing
        if report.skipped:
            test.status, test.message = SKIPPED, f"Skipped: {_skip_reason(report)}"
            return
        test.status, test.message = _failure(report, test, self.config)
        test.import_error = isinstance(report.longrepr, str) and "could not import" in str(
            report.longrepr
        )

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if nodeid in self.tests:
            self.save()

    # -- timeouts: make pytest-timeout's signal reach a main thread blocked in a socket read

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings):
        result = yield
        if settings.method == "signal" and threading.current_thread() is threading.main_thread():
            self._nudge = _TimeoutNudge(float(settings.timeout))
        return result

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item):
        if self._nudge is not None:
            self._nudge.stop()
            self._nudge = None
        return (yield)

    # -- the end, however it comes

    def pytest_keyboard_interrupt(self) -> None:
        self.info.note = "the run was interrupted (Ctrl-C) before it finished"
        self.save()

    def pytest_internalerror(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.info.note = f"the run stopped on an internal error: {excinfo.exconly()}"
        self.save()

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.info.exit_status = int(exitstatus)
        for test in self.tests.values():
            if test.status == RUNNING:
                test.status = ERROR
                test.message = test.message or "The run stopped while this test was running."
        self.info.complete = not any(t.status == NOT_RUN for t in self.tests.values())
        self.save()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.table or not any(t.status != NOT_RUN for t in self.tests.values()):
            return
        terminalreporter.write_sep("=", "score")
        terminalreporter.write_line(render_table(list(self.tests.values()), self.info))
        if self.json_path is not None:
            terminalreporter.write_line(f"results.json written to {self.json_path}")


class _TimeoutNudge:
    """Make pytest-timeout's alarm actually stop a test blocked in a py4j socket read.

    The kernel may deliver SIGALRM to any thread (py4j and Spark start several); the handler then
    waits for the main thread to run Python code again, which never happens while it waits for a
    Spark job or streaming query that never ends. So after the deadline the alarm is re-sent to
    the main thread itself until the test's current phase has ended. Before the handler raises,
    the main thread's py4j connection is dropped: the interrupted call's answer would otherwise
    block the next call on it (e.g. pyspark's clean-up on the way out).
    """

    GRACE = 2.0
    EVERY = 2.0

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.original = signal.getsignal(signal.SIGALRM)
        self.active = callable(self.original)
        if not self.active:
            return
        signal.signal(signal.SIGALRM, self._handler)
        threading.Thread(
            target=self._run, args=(seconds,), name="grading-timeout-nudge", daemon=True
        ).start()

    def _handler(self, signum: int, frame: object) -> None:
        __tracebackhide__ = True
        if not self.active:
            return  # a late nudge after the phase ended: nothing to interrupt
        _drop_py4j_connection()
        self.original(signum, frame)

    def _run(self, seconds: float) -> None:
        if self.stopped.wait(seconds + self.GRACE):
            return
        main = threading.main_thread().ident
        while main is not None:
            with self.lock:
                if not self.active:
                    return
                signal.pthread_kill(main, signal.SIGALRM)
            if self.stopped.wait(self.EVERY):
                return

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def stop(self) -> None:
        with self.lock:
            self.active = False
        self.stopped.set()


def _drop_py4j_connection() -> None:
    """Close the main thread's py4j connection (the next call opens a fresh one)."""
    if "pyspark" not in sys.modules:
        return
    try:
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
        if context is None:
            return
        client = context._gateway._gateway_client
        connection = getattr(client, "get_thread_connection", lambda: None)()
        if connection is not None:
            connection.close(reset=True)
    except Exception:  # noqa: BLE001 - best effort inside a signal handler
        pass


def _points(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("points")
    if marker is None:
        return None
    value = marker.args[0] if marker.args else marker.kwargs.get("n")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.points needs a positive number")
    return float(value)


def _docstring(item: pytest.Item) -> str:
    doc = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _relative(path: Path | str, config: pytest.Config) -> str:
    try:
        return str(Path(path).resolve().relative_to(config.rootpath))
    except ValueError:
        return loader.display_path(Path(path))


def _failure(report: pytest.TestReport, test: GradedTest, config: pytest.Config) -> tuple[str, str]:
    text, where = _crash_message(report, config)
    if TIMEOUT_TEXT in text:
        seconds = text.split(">", 1)[-1].split("s)", 1)[0]
        return TIMEOUT, (
            f"Timeout: this test was stopped after {seconds} s. Look for an endless loop, or a "
            f"wait/poll/awaitTermination() without a time limit, in your code for part {test.part}."
        )
    status = FAILED if report.when == "call" else ERROR
    if report.when == "setup" and not isinstance(report.longrepr, str):
        text = f"Error while preparing this test (fixture setup):\n{text}"
    elif report.when == "teardown":
        text = f"Error while cleaning up after this test (teardown):\n{text}"
    if where:
        text += f"\n(at {where})"
    return status, trim(text)


def _crash_message(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str]:
    longrepr = report.longrepr
    if isinstance(longrepr, str):
        return longrepr, ""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is None:
        return str(longrepr), ""
    lines = crash.message.splitlines()
    if lines and not lines[0].startswith("assert "):
        # A test's own message says what went wrong; pytest's "+ where ..." introspection of
        # harness internals (module names, function reprs) only adds noise for a learner.
        lines = [line for line in lines if not WHERE_LINE.match(line)]
    return "\n".join(lines), f"{_relative(crash.path, config)}:{crash.lineno}"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _recover_spark_after_timeout() -> None:
    """After a timeout: cancel the Spark jobs and streaming queries the test left running."""
    if "pyspark" not in sys.modules:
        return
    _drop_py4j_connection()
    # In a helper thread with a bounded wait: stopping a stuck query must not hang the run.
    worker = threading.Thread(target=_cancel_spark_work, name="grading-spark-cleanup", daemon=True)
    worker.start()
    worker.join(SPARK_CLEANUP_SECONDS)


def _cancel_spark_work() -> None:
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        context = SparkContext._active_spark_context
        if context is None:
            return
        context.cancelAllJobs()
        session = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        for query in session.streams.active:
            query.stop()
    except Exception as exc:  # noqa: BLE001 - best effort; the next test reports real problems
        sys.stderr.write(f"grading: could not clean up Spark after a timeout: {exc}\n")


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test session."""
    from harness.runtime.spark import get_spark

    session = get_spark("opensky-labs-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session", autouse=True)
def _docker_stack(request: pytest.FixtureRequest) -> None:
    """With STACK=docker, pytest-docker brings the compose stack up (healthy) before any test."""
    from harness.runtime.config import stack

    if stack() == "docker":
        request.getfixturevalue("docker_services")
