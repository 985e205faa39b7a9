"""Bounded waits: the one way the course polls for something to become true (built on tenacity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """What was awaited did not happen in time; the message names it."""


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = 60.0,
    every: float = 0.5,
    error: type[Exception] = WaitTimeout,
) -> T:
    """Call `condition` every `every` s until it returns something truthy, and return that.

    After `timeout` s, `error` is raised with a message naming `what` was awaited. An exception
    raised by `condition` itself is not retried: it ends the wait at once (a process that died
    should say so, not time out).
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(every),
        retry=retry_if_result(lambda result: not result),
    )
    try:
        return retrying(condition)
    except RetryError:
        raise error(f"{what} did not happen within {timeout:g} s") from None


def wait_quietly(condition: Callable[[], object], timeout: float, every: float = 0.2) -> bool:
    """Like `wait_until`, but answers False instead of raising when time runs out."""
    try:
        wait_until(condition, "condition", timeout, every)
        return True
    except WaitTimeout:
        return False


def retry_while(
    passing: Callable[[BaseException], bool],
    call: Callable[[], T],
    timeout: float = 60.0,
    every: float = 0.3,
) -> T:
    """Call `call` until it returns, again every `every` s while it raises an exception for which
    `passing(exc)` is true (a broker still electing a leader); any other exception, or the last
    passing one once `timeout` s are over, is raised as is."""
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(every),
        retry=retry_if_exception(passing),
        reraise=True,
    )
    return retrying(call)
