"""`make check-wrong-answers`: prove the graded suites catch plausible wrong answers.

A wrong answer is `labs/<lab>/tests/wrong_answers/<slug>.patch`: two header lines
(`# Wrong answer: <what the mistake is>`, `# Catches: <pytest -k expression>`), then a unified diff
against `solutions/` (paths `a/<lab>/...`, applied with `patch -p1` inside a copy of solutions/).

For each lab, every patch is applied to its own fresh copy of `solutions/<lab>`; then ONE pytest
process runs the lab's graded tests that `Catches` selects against each copy in turn (re-targeting
`lab_module` between wrong answers, so session fixtures such as the Spark session are shared;
module fixtures are rebuilt), stopping at a wrong answer's first graded failure. Every test that
caught something is then run once more on the unpatched reference in the same process: a catch
only counts when that test passes there (a service that is down, or a flaky test, proves nothing).
The check fails unless every wrong answer loses points on at least one graded test.

    python -m harness.grading.wrong_answers [LAB ...] [--json PATH] [--isolate] [--keep]
        [--only SLUG] [-- pytest args]

The same module is the pytest plugin the runner loads in its child process
(`-p harness.grading.wrong_answers --wrong-answers-plan PLAN.json`).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.grading import loader
from harness.grading.runner import Suite, command_line, find_suites
from harness.runtime.config import ROOT

PATCH_FOLDER = "wrong_answers"
TIMEOUT_TEXT = "Timeout (>"  # pytest-timeout's message
WHERE_LINE = re.compile(r"^\s*\+\s+where ")
HEADER = re.compile(r"^#\s*(Wrong answer|Catches)\s*:\s*(.*?)\s*$")
MIN_PER_LAB = 10
# Outcome of one wrong answer.
CAUGHT, MISSED, ERROR = "caught", "not caught", "error"
CHILD_FLAGS = ["-qq", "--tb=no", "-rN", "--no-header", "--no-score-table", "-p", "no:nbval"]


class PatchError(Exception):
    """A wrong-answer file that cannot be used (bad header, or a diff that does not apply)."""


@dataclass
class WrongAnswer:
    """One patch file and, once prepared, the scratch labs/ copy it was applied to."""

    lab: str
    slug: str
    patch: str
    description: str
    catches: str
    labs_dir: str = ""


@dataclass
class Outcome:
    """What grading one wrong answer showed."""

    lab: str
    slug: str
    description: str
    catches: str
    status: str = ERROR
    caught_by: str = ""  # the nodeid of the first graded test that lost points
    message: str = ""  # that test's failure (first line), or why this is an error / not caught
    tests_run: int = 0
    seconds: float = 0.0


@dataclass
class LabResult:
    """One lab's wrong answers and what became of them."""

    lab: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 0
    note: str = ""

    @property
    def caught(self) -> int:
        return sum(o.status == CAUGHT for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)


# ------------------------------------------------------------------ reading and applying patches


def read_wrong_answer(path: Path, lab: str) -> WrongAnswer:
    """Parse the two header lines of a `.patch` file (raises PatchError naming the file)."""
    fields: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(f"{loader.display_path(path)}: cannot read it: {exc}") from None
    for line in lines:
        if not line.startswith("#"):
            break
        match = HEADER.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
    missing = [name for name in ("Wrong answer", "Catches") if not fields.get(name)]
    if missing:
        raise PatchError(
            f"{loader.display_path(path)}: the header lacks "
            + " and ".join(f"'# {name}: …'" for name in missing)
            + " (see /work/briefs/WRONG_ANSWERS.md: two comment lines before the diff)"
        )
    if not any(line.startswith("@@") for line in lines):
        raise PatchError(f"{loader.display_path(path)}: no unified diff hunk (@@ …) in the file")
    return WrongAnswer(lab, path.stem, str(path), fields["Wrong answer"], fields["Catches"])


def patch_files(suite: Suite, only: list[str] | None = None) -> list[Path]:
    """The lab's `.patch` files in name order; with `only`, those whose slug matches a pattern."""
    paths = sorted((suite.tests / PATCH_FOLDER).glob("*.patch"))
    if only:
        paths = [p for p in paths if any(fnmatch.fnmatch(p.stem, pattern) for pattern in only)]
    return paths


def spread(suite: Suite, count: int, rotate: str = "") -> list[str]:
    """`count` of the lab's wrong answers, taken in turn from each part they catch (A, B, …), so a
    shorter gate still covers every part. The same `rotate` key gives the same choice; another key
    (CI passes the commit) starts each part's list elsewhere, so successive runs cover them all."""
    answers, _ = find_wrong_answers(suite)
    by_part: dict[str, list[str]] = {}
    for answer in answers:
        part = re.search(r"part([A-Za-z0-9])", answer.catches)
        by_part.setdefault(part.group(1) if part else "-", []).append(answer.slug)
    if rotate:
        for part, slugs in by_part.items():
            digest = hashlib.sha256(f"{rotate}:{suite.lab}:{part}".encode()).digest()
            start = int.from_bytes(digest[:4], "big") % len(slugs)
            by_part[part] = slugs[start:] + slugs[:start]
    picked: list[str] = []
    while len(picked) < count and any(by_part.values()):
        for part in sorted(by_part):
            if by_part[part] and len(picked) < count:
                picked.append(by_part[part].pop(0))
    return picked


def find_wrong_answers(
    suite: Suite, only: list[str] | None = None
) -> tuple[list[WrongAnswer], list[Outcome]]:
    """The lab's readable wrong answers, and an error outcome for each unreadable one."""
    found: list[WrongAnswer] = []
    broken: list[Outcome] = []
    for path in patch_files(suite, only):
        try:
            found.append(read_wrong_answer(path, suite.lab))
        except PatchError as exc:
            broken.append(Outcome(suite.lab, path.stem, "", "", ERROR, message=str(exc)))
    return found, broken


def apply_patch(patch: Path, solutions: Path, lab: str, scratch: Path) -> Path:
    """Copy `solutions/<lab>` to `scratch/<lab>`, apply `patch` there; return `scratch` (a labs/).

    Raises PatchError naming the patch when it does not apply cleanly or changes nothing.
    """
    source = solutions / lab
    target = scratch / lab
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [
            "patch",
            "-p1",
            "--batch",
            "--forward",
            "--no-backup-if-mismatch",
            "--reject-file=-",
            "-d",
            str(scratch),
            "-i",
            str(patch.resolve()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise PatchError(
            f"{loader.display_path(patch)} does not apply to {loader.display_path(source)} "
            f"(patch -p1 exit {result.returncode}): {output[-1500:]}"
        )
    if _same_tree(source, target):
        raise PatchError(f"{loader.display_path(patch)} applies but changes nothing")
    return scratch


def _same_tree(a: Path, b: Path) -> bool:
    files_a = {
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    files_b = {
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


# ------------------------------------------------------------------ the pytest plugin (child side)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("grading").addoption(
        "--wrong-answers-plan",
        default=None,
        metavar="PATH",
        help="(used by python -m harness.grading.wrong_answers) grade the wrong answers in PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    plan = config.getoption("--wrong-answers-plan", None)
    if plan:
        config.pluginmanager.register(Gate(config, Path(plan)), "opensky-wrong-answers")


class _SessionOnly:
    """Stands for "the next item" when only session-scoped fixtures are to survive a teardown."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session

    def listchain(self) -> list[Any]:
        return [self.session]


class Gate:
    """Runs the selected graded tests once per wrong answer in one session; writes the outcomes.

    The plan (JSON) holds `wrong_answers` (WrongAnswer fields) and `reference` (a labs/ copy of the
    unpatched solutions). The results file is rewritten after every wrong answer, with `running`
    naming the one in progress, so the parent can tell which one a crashed process was grading.
    """

    def __init__(self, config: pytest.Config, plan_path: Path) -> None:
        plan = json.loads(plan_path.read_text())
        self.config = config
        self.results_path = Path(plan["results"])
        self.wrong_answers = [WrongAnswer(**w) for w in plan["wrong_answers"]]
        self.reference = plan["reference"]
        self.outcomes: list[Outcome] = []
        self.confirm_failures: dict[str, str] = {}
        self.running = ""
        self._failure: tuple[str, str] | None = None  # (nodeid, message) of this run's first loss
        self._service_down = ""
        self._messages: dict[str, str] = {}

    # -- reporting

    def _save(self, done: bool = False) -> None:
        data = {
            "outcomes": [asdict(o) for o in self.outcomes],
            "running": self.running,
            "confirm_failures": self.confirm_failures,
            "done": done,
        }
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.results_path)

    def _say(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(text)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        # No progress dots: the gate prints one line per wrong answer instead.
        return report.outcome, "", ""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        excinfo = call.excinfo
        if excinfo is not None and _is_service_error(excinfo.value):
            self._service_down = str(excinfo.value).splitlines()[0]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and self._failure is None:
            self._failure = (report.nodeid, _first_line(report))

    # -- the loop

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed:
            why = f"the lab's suite does not collect ({session.testsfailed} collection error(s))"
            for wrong in self.wrong_answers:
                self.outcomes.append(_outcome(wrong, ERROR, message=why))
            self._save(done=True)
            return True
        graded = [item for item in session.items if item.get_closest_marker("points")]
        base = loader.current_target().base
        for wrong in self.wrong_answers:
            self.running = wrong.slug
            self._save()
            self.outcomes.append(self._grade(session, graded, wrong, base))
            self._say(describe(self.outcomes[-1]))
        self.running = "(reference re-check)"
        self._save()
        self._confirm(session, graded, base)
        self.running = ""
        self._save(done=True)
        loader.set_target()
        return True

    def _run(self, session: pytest.Session, items: list[pytest.Item], stop: bool) -> list[str]:
        """Run `items` against the current target; nodeids of those that lost points.

        With `stop`, the first loss ends the run (pytest's -x for one wrong answer). Afterwards
        everything but session-scoped fixtures is torn down, so module fixtures (the lab module,
        a pipeline built from it) are rebuilt for the next copy.
        """
        failed: list[str] = []
        for index, item in enumerate(items):
            last = index + 1 == len(items)
            self._failure = None
            item.config.hook.pytest_runtest_protocol(
                item=item, nextitem=_SessionOnly(session) if last else items[index + 1]
            )
            if self._failure is not None:
                failed.append(item.nodeid)
                self._messages[item.nodeid] = self._failure[1]
                if stop:
                    break
        try:
            session._setupstate.teardown_exact(_SessionOnly(session))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a fixture's clean-up failing grades nothing
            self._say(f"    (a fixture's clean-up failed between runs: {_oneline(str(exc))})")
        return failed

    def _grade(
        self, session: pytest.Session, graded: list[pytest.Item], wrong: WrongAnswer, base: Path
    ) -> Outcome:
        started = time.monotonic()
        try:
            selected = select(graded, wrong.catches)
        except pytest.UsageError as exc:
            return _outcome(wrong, ERROR, message=f"Catches: {exc}")
        if not selected:
            return _outcome(
                wrong, ERROR, message=f"Catches: {wrong.catches!r} selects no graded test"
            )
        loader.set_target("labs", wrong.labs_dir, base)
        self._service_down = ""
        self._messages = {}
        failed = self._run(session, selected, stop=True)
        if failed and TIMEOUT_TEXT in self._messages[failed[0]]:
            # A time limit hit proves little on a busy machine (e.g. the Spark session starting
            # within the first test): grade this wrong answer once more, now that all is warm.
            self._say(f"    ({wrong.slug}: {_short(failed[0])} timed out; grading it again)")
            self._messages = {}
            failed = self._run(session, selected, stop=True)
        nodeids = [item.nodeid for item in selected]
        runs = nodeids.index(failed[0]) + 1 if failed else len(selected)
        seconds = round(time.monotonic() - started, 1)
        if self._service_down:
            why = f"a service is down, nothing was graded: {self._service_down}"
            return _outcome(wrong, ERROR, message=why, runs=runs, seconds=seconds)
        if failed:
            return _outcome(wrong, CAUGHT, failed[0], self._messages[failed[0]], runs, seconds)
        why = f"all {runs} graded test(s) selected by {wrong.catches!r} passed"
        return _outcome(wrong, MISSED, message=why, runs=runs, seconds=seconds)

    def _confirm(self, session: pytest.Session, graded: list[pytest.Item], base: Path) -> None:
        """Run every catching test on the unpatched reference: a catch counts only if it passes."""
        catching = {o.caught_by for o in self.outcomes if o.status == CAUGHT}
        items = [item for item in graded if item.nodeid in catching]
        if not items:
            return
        started = time.monotonic()
        loader.set_target("labs", self.reference, base)
        self._service_down = ""
        self._messages = {}
        failed = self._run(session, items, stop=False)
        for nodeid in failed:
            self.confirm_failures[nodeid] = self._messages[nodeid]
        for outcome in self.outcomes:
            if outcome.status == CAUGHT and outcome.caught_by in self.confirm_failures:
                outcome.status = ERROR
                outcome.message = (
                    f"{_short(outcome.caught_by)} also fails on the unpatched reference in this "
                    f"run, so its failure proves nothing: "
                    f"{self.confirm_failures[outcome.caught_by]}"
                )
        self._say(
            f"  reference re-check: {len(items) - len(failed)}/{len(items)} catching test(s) pass "
            f"on the unpatched solutions ({time.monotonic() - started:.1f} s)"
        )


def select(items: list[pytest.Item], expression: str) -> list[pytest.Item]:
    """The items a `-k` expression selects (pytest's own matcher: names, markers, keywords)."""
    from _pytest.mark import KeywordMatcher
    from _pytest.mark.expression import Expression, ParseError

    try:
        compiled = Expression.compile(expression)
    except ParseError as exc:
        raise pytest.UsageError(f"{expression!r} is not a valid -k expression: {exc}") from None
    return [item for item in items if compiled.evaluate(KeywordMatcher.from_item(item))]


def _is_service_error(exc: BaseException) -> bool:
    from harness.runtime.services import ServiceUnavailable

    return isinstance(exc, ServiceUnavailable)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    # pytest's "+ where …" lines explain harness internals, not the mistake.
    text = "\n".join(line for line in text.splitlines() if not WHERE_LINE.match(line))
    if report.when != "call":
        text = f"({report.when}) {text}"
    return _oneline(text)


def _oneline(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def _outcome(
    wrong: WrongAnswer,
    status: str,
    caught_by: str = "",
    message: str = "",
    runs: int = 0,
    seconds: float = 0.0,
) -> Outcome:
    return Outcome(
        wrong.lab,
        wrong.slug,
        wrong.description,
        wrong.catches,
        status,
        caught_by,
        message,
        runs,
        seconds,
    )


def describe(outcome: Outcome) -> str:
    """One line (two for problems) per wrong answer, for people reading the log."""
    if outcome.status == CAUGHT:
        head = f"  caught      {outcome.slug}: by {_short(outcome.caught_by)} ({outcome.seconds} s)"
        return f"{head}\n              {outcome.message[:160]}"
    label = "NOT CAUGHT" if outcome.status == MISSED else "ERROR     "
    return f"  {label}  {outcome.slug}: {outcome.message}"


# ------------------------------------------------------------------ the runner (parent side)


def _child_command(suite: Suite, plan: Path, first_labs_dir: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(suite.tests),
        "-p",
        "harness.grading.wrong_answers",
        "--wrong-answers-plan",
        str(plan),
        "--target",
        "labs",
        "--labs-dir",
        first_labs_dir,
        *CHILD_FLAGS,
        *extra,
    ]


def _spawn(command: list[str], cwd: Path) -> int:
    """Run the child pytest (its output goes straight to ours); its exit status."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # scratch copies differ by a byte: never trust a .pyc
    # Its own process group, so Ctrl-C here also stops Spark's JVM there.
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)
        process.wait()
        raise


def _grade_batch(
    suite: Suite,
    batch: list[WrongAnswer],
    reference: Path,
    work: Path,
    extra: list[str],
    cwd: Path,
) -> tuple[list[Outcome], int]:
    """Grade `batch` in as few pytest processes as crashes allow; (outcomes, processes used)."""
    outcomes: dict[str, Outcome] = {}
    pending = list(batch)
    processes = 0
    while pending:
        processes += 1
        results = work / f"results-{processes}.json"
        plan = work / f"plan-{processes}.json"
        plan.write_text(
            json.dumps(
                {
                    "results": str(results),
                    "reference": str(reference),
                    "wrong_answers": [asdict(w) for w in pending],
                }
            )
        )
        status = _spawn(_child_command(suite, plan, pending[0].labs_dir, extra), cwd)
        data = json.loads(results.read_text()) if results.is_file() else None
        if data is None:
            why = f"the pytest process exited ({status}) before grading anything"
            for wrong in pending:
                outcomes[wrong.slug] = _outcome(wrong, ERROR, message=why)
            break
        for item in data["outcomes"]:
            outcomes[item["slug"]] = Outcome(**item)
        if data["done"]:
            break
        running = data["running"]
        crashed = next((w for w in pending if w.slug == running), None)
        why = f"the pytest process died (exit status {status}) while it ran"
        if crashed is None:  # during the reference re-check: the catches stay unconfirmed
            for outcome in outcomes.values():
                if outcome.status == CAUGHT:
                    outcome.status = ERROR
                    outcome.message = f"not confirmed on the reference: {why} the re-check"
            break
        outcomes[crashed.slug] = _outcome(crashed, ERROR, message=f"{why} this wrong answer")
        print(describe(outcomes[crashed.slug]), flush=True)
        pending = [w for w in pending if w.slug not in outcomes]
    return [outcomes[w.slug] for w in batch if w.slug in outcomes], processes


def run_lab(
    suite: Suite,
    solutions: Path,
    scratch: Path,
    *,
    isolate: bool = False,
    extra: list[str] | None = None,
    cwd: Path = ROOT,
    only: list[str] | None = None,
) -> LabResult:
    """Apply and grade every wrong answer of one lab (or those `only` names)."""
    started = time.monotonic()
    result = LabResult(suite.lab)
    found, broken = find_wrong_answers(suite, only)
    work = scratch / suite.lab
    ready: list[WrongAnswer] = []
    errors: dict[str, Outcome] = {o.slug: o for o in broken}
    for wrong in found:
        try:
            copy = apply_patch(Path(wrong.patch), solutions, suite.lab, work / wrong.slug)
        except (PatchError, OSError, subprocess.SubprocessError) as exc:
            errors[wrong.slug] = _outcome(wrong, ERROR, message=str(exc))
            print(describe(errors[wrong.slug]), flush=True)
            continue
        wrong.labs_dir = str(copy)
        ready.append(wrong)
    reference = work / "_reference"
    shutil.copytree(
        solutions / suite.lab,
        reference / suite.lab,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    graded: dict[str, Outcome] = {}
    for batch in [[w] for w in ready] if isolate else [ready] if ready else []:
        outcomes, processes = _grade_batch(suite, batch, reference, work, extra or [], cwd)
        result.processes += processes
        graded.update((o.slug, o) for o in outcomes)
    order = [path.stem for path in patch_files(suite, only)]
    merged = {**errors, **graded}
    result.outcomes = [merged[slug] for slug in order if slug in merged]
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _summary(result: LabResult) -> str:
    title = loader.lab_title(result.lab)
    plural = "es" if result.processes != 1 else ""
    return (
        f"{title} ({result.lab}): {result.caught}/{result.total} wrong answers caught in "
        f"{result.seconds:.1f} s ({result.processes} pytest process{plural})"
    )


def write_report(path: Path, results: list[LabResult], seconds: float, ok: bool) -> None:
    """The `--json` report (for the bench report): per lab caught/total and seconds."""
    data = {
        "ok": ok,
        "seconds": round(seconds, 1),
        "caught": sum(r.caught for r in results),
        "total": sum(r.total for r in results),
        "labs": [
            {
                "lab": r.lab,
                "caught": r.caught,
                "total": r.total,
                "seconds": r.seconds,
                "processes": r.processes,
                "note": r.note,
                "wrong_answers": [asdict(o) for o in r.outcomes],
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser, argv, extra = command_line("harness.grading.wrong_answers", __doc__, argv)
    parser.add_argument("labs", nargs="*", help="only these labs (numbers or folder names)")
    parser.add_argument("--json", type=Path, default=None, help="write a JSON report here")
    parser.add_argument(
        "--isolate", action="store_true", help="one pytest process per wrong answer (slower)"
    )
    parser.add_argument(
        "--min",
        type=int,
        default=MIN_PER_LAB,
        help=f"fewest wrong answers a lab with a {PATCH_FOLDER}/ folder may have (default "
        f"{MIN_PER_LAB})",
    )
    parser.add_argument(
        "--require-all",
        action="store_true",
        help="fail for a lab with no wrong answers at all (default: list it and go on)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SLUG",
        help="only the wrong answers whose name matches (a glob; repeatable; implies --min 0)",
    )
    parser.add_argument(
        "--per-lab",
        type=int,
        default=None,
        metavar="N",
        help="grade N wrong answers per lab, spread over its parts (a quicker gate; default all)",
    )
    parser.add_argument(
        "--rotate",
        default="",
        metavar="KEY",
        help="with --per-lab: which N depends on KEY (e.g. the commit), so runs take turns",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    suites = find_suites(args.tests_root, args.labs)
    if args.only:
        args.min = 0
    with_patches = [s for s in suites if patch_files(s, args.only)]
    without = [s.lab for s in suites if s not in with_patches]
    if not shutil.which("patch"):
        from harness.ops.stack.base import StackError, apt_install

        try:  # the gate's one system tool: installed like the stack's Debian packages
            apt_install(["patch"], "the `patch` program (applies the wrong answers)")
        except StackError as exc:
            print(exc, file=sys.stderr)
            return 2
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="wrong-answers-"))
    results: list[LabResult] = []
    try:
        for suite in with_patches:
            only = (
                spread(suite, args.per_lab, args.rotate)
                if args.per_lab and not args.only
                else args.only
            )
            count = len(patch_files(suite, only))
            print(
                f"{loader.lab_title(suite.lab)} ({suite.lab}): {count} wrong answer(s)", flush=True
            )
            result = run_lab(
                suite,
                args.solutions,
                scratch,
                isolate=args.isolate,
                extra=extra,
                cwd=args.tests_root.resolve().parent,
                only=only,
            )
            # A lab must *have* enough wrong answers, however many of them this run grades.
            available = len(patch_files(suite))
            if available < args.min:
                result.note = f"only {available} wrong answers (at least {args.min} expected)"
            results.append(result)
            print(_summary(result) + (f"; {result.note}" if result.note else ""), flush=True)
    finally:
        if args.keep:
            print(f"scratch copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - started
    problems = [o for r in results for o in r.outcomes if o.status != CAUGHT]
    short = [r for r in results if r.note]
    missing = without if (args.require_all or (args.labs and not args.only)) else []
    ok = bool(results) and not problems and not short and not missing
    if len(results) > 1:
        print()
        for result in results:
            print(_summary(result))
    if without:
        print(f"no wrong answers yet: {', '.join(without)}")
    if args.json is not None:
        write_report(args.json, results, seconds, ok)
    if ok:
        total = sum(r.total for r in results)
        print(
            f"OK: all {total} wrong answers in {len(results)} lab(s) lose points ({seconds:.0f} s)."
        )
        return 0
    print(f"FAIL ({seconds:.0f} s):")
    for outcome in problems:
        print(f"  {outcome.lab}/{outcome.slug}: {outcome.status}: {outcome.message}")
    for result in short:
        print(f"  {result.lab}: {result.note}")
    for lab in missing:
        print(f"  {lab}: no wrong answers in labs/{lab}/tests/{PATCH_FOLDER}/")
    if not results and not missing:
        print("  no wrong answers found")
    return 1


if __name__ == "__main__":
    sys.exit(main())
