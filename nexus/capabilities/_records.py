"""Record helpers shared by several capabilities' formatters (chat records: :mod:`nexus.conversations`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from nexus.capabilities import SkipRecord
from nexus.capabilities.answers import strip_calculator
from nexus.conversations import ConversationError

P = ParamSpec("P")
R = TypeVar("R")


def formatter(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` with a record the conversation layer refuses (:class:`ConversationError`) raised as
    :class:`SkipRecord`, with the same reason."""

    @functools.wraps(fn)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConversationError as error:
            raise SkipRecord(str(error)) from error

    return wrapped


def split_gsm8k(record: dict[str, Any]) -> tuple[str, str, str]:
    """GSM8K ``question``/``answer`` -> (question, worked steps without calculator notes, final answer).

    Raises:
        SkipRecord: no question, or no ``#### <final answer>``.
    """
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or "####" not in answer:
        raise SkipRecord("no question, or answer without '#### <final answer>'")
    steps, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if not final:
        raise SkipRecord("empty final answer after '####'")
    return question.strip(), strip_calculator(steps).strip(), final

