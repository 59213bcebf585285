"""Final-answer extraction and normalization shared by the math-style evaluators."""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:/\d+)?"
_PATTERNS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}"),
    re.compile(r"final answer(?: is)?\s*[:=]?\s*(" + _NUMBER + ")", re.IGNORECASE),
    re.compile(r"answer(?: is)?\s*[:=]?\s*(" + _NUMBER + ")", re.IGNORECASE),
)
_ANY_NUMBER = re.compile(_NUMBER)
_CALCULATOR = re.compile(r"<<[^>]*>>")


def strip_calculator(text: str) -> str:
    """Remove GSM8K's ``<<48/2=24>>`` calculator annotations."""
    return _CALCULATOR.sub("", text)


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: ``#### x``, ``\\boxed{x}``, "final answer is x", else the last number."""
    for pattern in _PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return matches[-1].strip()
    numbers = _ANY_NUMBER.findall(text)
    return numbers[-1].strip() if numbers else None


def normalize(answer: str | None) -> str | None:
    """Canonical form for comparison: numbers (commas, $, trailing zeros, fractions) or trimmed text."""
    if answer is None:
        return None
    text = answer.strip().rstrip(".").replace("$", "").replace(",", "").replace(" ", "")
    text = re.sub(r"\\(?:d|t)?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", text)
    text = text.replace("\\%", "").replace("%", "")
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return text.lower()
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def answers_match(generated: str, reference: str) -> bool:
    """True when the final answer of ``generated`` equals ``reference`` after normalization."""
    got = normalize(extract_answer(generated))
    return got is not None and got == normalize(reference)
