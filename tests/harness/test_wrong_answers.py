"""The wrong-answer gate (`make check-wrong-answers`) on a tiny demo lab built with pytester."""

from __future__ import annotations

import difflib
import json
import textwrap

from harness.grading import wrong_answers
from tests.harness.samples import DEMO_SOLUTION, DEMO_TESTS

LAB = "lab01_demo"
# A graded test that fails whatever the code does: what it "catches" proves nothing.
BROKEN_TEST = '''

    @pytest.mark.points(1)
    def test_partC_always_fails(demo):
        """Stands for a flaky test or a service that is down."""
        assert False, "Lab 01 part C: this test fails on every copy"
'''


def _patch(description: str, catches: str, old: str, new: str) -> str:
    """A wrong answer in the shared format: two header lines, then `diff -u` of demo.py."""
    before = textwrap.dedent(DEMO_SOLUTION).lstrip("\n")
    after = before.replace(old, new)
    assert after != before, f"{old!r} is not in the demo solution"
    diff = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{LAB}/demo.py",
        f"b/{LAB}/demo.py",
        n=3,
    )
    return f"# Wrong answer: {description}\n# Catches: {catches}\n" + "".join(diff)


def _demo_course(course, patches: dict[str, str], tests: str = DEMO_TESTS) -> list[str]:
    course.module(LAB, "demo", DEMO_SOLUTION, where="solutions")
    course.tests(LAB, tests)
    for slug, text in patches.items():
        course.write(f"labs/{LAB}/tests/wrong_answers/{slug}.patch", text)
    return [
        "--solutions",
        str(course.root / "solutions"),
        "--tests-root",
        str(course.root / "labs"),
    ]


def _gate(course, capfd, patches: dict[str, str], *options: str, tests: str = DEMO_TESTS):
    """Run the gate on a demo course: (exit code, what it printed, the child's lines included)."""
    code = wrong_answers.main([*_demo_course(course, patches, tests), *options])
    return code, capfd.readouterr().out


CAUGHT_A = _patch("add() subtracts", "partA", "return a + b", "return a - b")
CAUGHT_B = _patch("double() adds two instead", "partB", "return 2 * x", "return x + 2")
# Right for every input the suite tries, wrong for 7: the demo suite cannot see it.
MISSED = _patch("add() is wrong for 7", "partA", "return a + b", "return 0 if a == 7 else a + b")


def test_header_is_parsed_and_required(tmp_path):
    """Both header lines are read; a file without them is an error naming it."""
    good = tmp_path / "good.patch"
    good.write_text(CAUGHT_A)
    wrong = wrong_answers.read_wrong_answer(good, LAB)
    assert (wrong.slug, wrong.description, wrong.catches) == ("good", "add() subtracts", "partA")
    bad = tmp_path / "bad.patch"
    bad.write_text(CAUGHT_A.split("\n", 1)[1])
    try:
        wrong_answers.read_wrong_answer(bad, LAB)
    except wrong_answers.PatchError as exc:
        assert "bad.patch" in str(exc) and "# Wrong answer" in str(exc)
    else:
        raise AssertionError("a patch without its description must be refused")


def test_gate_names_the_catching_test_and_fails_on_a_missed_answer(course, tmp_path, capfd):
    """Caught answers name their test; a missed one and a patch that does not apply fail the gate,
    each by name; all wrong answers of the lab share one pytest process."""
    stale = CAUGHT_B.replace("return 2 * x", "return 3 * x")  # context no longer in the file
    args = _demo_course(
        course,
        {"add_subtracts": CAUGHT_A, "double_adds": CAUGHT_B, "add_seven": MISSED, "stale": stale},
    )
    report = tmp_path / "wrong-answers.json"
    assert wrong_answers.main([*args, "--min", "1", "--json", str(report)]) == 1
    out = capfd.readouterr().out
    assert "caught      add_subtracts: by test_partA_adds" in out
    assert "caught      double_adds: by test_partB_doubles" in out
    assert "NOT CAUGHT  add_seven" in out
    assert "stale.patch does not apply" in out
    assert "Lab 01 (lab01_demo): 2/4 wrong answers caught" in out
    assert "(1 pytest process)" in out
    data = json.loads(report.read_text())
    assert (data["ok"], data["caught"], data["total"]) == (False, 2, 4)
    by_slug = {w["slug"]: w for w in data["labs"][0]["wrong_answers"]}
    assert by_slug["add_subtracts"]["caught_by"].endswith("::test_partA_adds")
    assert by_slug["add_seven"]["status"] == "not caught"
    assert by_slug["stale"]["status"] == "error"


def test_gate_passes_when_every_wrong_answer_loses_points(course, capfd):
    """Each copy is graded on its own code: B's mistake is not hidden by A's cached module."""
    code, out = _gate(course, capfd, {"a": CAUGHT_A, "b": CAUGHT_B}, "--min", "2")
    assert code == 0
    assert "OK: all 2 wrong answers in 1 lab(s) lose points" in out
    assert "reference re-check: 2/2 catching test(s) pass" in out


def test_per_lab_grades_a_subset_of_a_lab_that_has_enough(course, capfd):
    """`--per-lab 1` grades one wrong answer; the minimum counts the lab's files, not the subset."""
    code, out = _gate(course, capfd, {"a": CAUGHT_A, "b": CAUGHT_B}, "--min", "2", "--per-lab", "1")
    assert code == 0, out
    assert "OK: all 1 wrong answers in 1 lab(s) lose points" in out
    code, out = _gate(course, capfd, {"a": CAUGHT_A, "b": CAUGHT_B}, "--min", "3", "--per-lab", "1")
    assert code == 1 and "only 2 wrong answers (at least 3 expected)" in out


def test_a_catch_by_a_test_failing_on_the_reference_does_not_count(course, capfd):
    """A test that fails on the unpatched reference too proves nothing: the gate says so."""
    broken = _patch("double() adds two", "partC", "return 2 * x", "return x + 2")
    code, out = _gate(
        course, capfd, {"broken": broken}, "--min", "1", tests=DEMO_TESTS + BROKEN_TEST
    )
    assert code == 1
    assert "test_partC_always_fails also fails on the unpatched reference" in out


def test_too_few_wrong_answers_and_bad_catches_fail(course, capfd):
    """A lab under the minimum fails; a Catches expression that selects nothing is an error."""
    nothing = _patch("double() adds two", "partZ", "return 2 * x", "return x + 2")
    code, out = _gate(course, capfd, {"a": CAUGHT_A, "nothing": nothing}, "--min", "10")
    assert code == 1
    assert "'partZ' selects no graded test" in out
    assert "only 2 wrong answers (at least 10 expected)" in out


def test_isolate_runs_one_process_per_wrong_answer(course, capfd):
    """--isolate grades each wrong answer in its own pytest process, with the same verdicts."""
    code, out = _gate(course, capfd, {"a": CAUGHT_A, "b": CAUGHT_B}, "--min", "2", "--isolate")
    assert code == 0 and "(2 pytest processes)" in out


def test_per_lab_spreads_over_parts_and_rotate_takes_turns():
    """`--per-lab N` covers every part; `--rotate KEY` picks another N per key, the same for a key."""
    suite = next(s for s in wrong_answers.find_suites(wrong_answers.ROOT / "labs", ["4"]))
    answers, _ = wrong_answers.find_wrong_answers(suite)
    parts = {
        a.slug: wrong_answers.re.search(r"part([A-Za-z0-9])", a.catches).group(1) for a in answers
    }
    plain = wrong_answers.spread(suite, 6)
    assert plain == wrong_answers.spread(suite, 6) and len(plain) == 6
    assert {parts[slug] for slug in plain} == set(parts.values()) or len(set(parts.values())) > 6
    picks = {tuple(wrong_answers.spread(suite, 6, rotate=f"commit-{n}")) for n in range(12)}
    assert len(picks) > 1, "every key picked the same wrong answers"
    assert wrong_answers.spread(suite, 6, "abc") == wrong_answers.spread(suite, 6, "abc")
    covered = {slug for pick in picks for slug in pick}
    assert len(covered) > 6, covered
    for pick in picks:
        assert len(set(pick)) == 6 and {parts[s] for s in pick} == {parts[s] for s in plain}
