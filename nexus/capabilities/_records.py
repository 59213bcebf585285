"""Record parsers shared by several capabilities' formatters."""

from __future__ import annotations

from typing import Any

from nexus.capabilities import SkipRecord
from nexus.capabilities._answers import strip_calculator


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


def sharegpt_question_and_reply(record: dict[str, Any]) -> tuple[str, str]:
    """The first user question and the first assistant reply of ShareGPT ``conversations``.

    Raises:
        SkipRecord: either is missing.
    """
    turns = record.get("conversations") or []
    user = next((t.get("value") for t in turns if t.get("from") in ("user", "human")), None)
    reply = next((t.get("value") for t in turns if t.get("from") in ("assistant", "gpt")), None)
    if not isinstance(user, str) or not isinstance(reply, str):
        raise SkipRecord("no user question and assistant reply in conversations")
    return user, reply
