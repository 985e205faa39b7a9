"""The course's one bounded wait (harness.runtime.waits): returns the first truthy answer, names what
it waited for when time runs out, and does not hide an error raised while waiting."""

from __future__ import annotations

import itertools
import time

import pytest

from harness.runtime.waits import WaitTimeout, retry_while, wait_quietly, wait_until


def test_returns_the_first_truthy_answer() -> None:
    answers = itertools.chain([None, 0, []], itertools.repeat("ready"))
    assert wait_until(lambda: next(answers), "the answer", timeout=5, every=0.01) == "ready"


def test_times_out_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="the topic's leader did not happen within 0.3 s"):
        wait_until(lambda: False, "the topic's leader", timeout=0.3, every=0.05)
    assert time.monotonic() - started < 3


def test_an_error_while_waiting_ends_the_wait_at_once() -> None:
    def died() -> bool:
        raise RuntimeError("the server exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(died, "the server", timeout=30)


def test_wait_quietly_answers_false_on_timeout() -> None:
    assert wait_quietly(lambda: True, 1) is True
    assert wait_quietly(lambda: False, 0.2, every=0.05) is False


def test_custom_error_type() -> None:
    with pytest.raises(AssertionError, match="leaders"):
        wait_until(lambda: None, "leaders", timeout=0.1, every=0.05, error=AssertionError)


def test_retry_while_retries_passing_errors_and_raises_others() -> None:
    """A passing error (a leader not elected yet) is retried; another error, or the passing one
    once time runs out, is raised as is."""
    iterator = iter([LookupError("no leader"), LookupError("no leader"), "offsets"])

    def call() -> str:
        answer = next(iterator)
        if isinstance(answer, Exception):
            raise answer
        return answer

    passing = lambda exc: isinstance(exc, LookupError)  # noqa: E731
    assert retry_while(passing, call, timeout=5, every=0.01) == "offsets"

    def other() -> str:
        raise ValueError("not retriable")

    with pytest.raises(ValueError, match="not retriable"):
        retry_while(passing, other, timeout=5, every=0.01)

    def always() -> str:
        raise LookupError("still no leader")

    started = time.monotonic()
    with pytest.raises(LookupError, match="still no leader"):
        retry_while(passing, always, timeout=0.3, every=0.05)
    assert time.monotonic() - started < 3
