"""Final-answer extraction, normalization and matching shared by the math-style scorers.

One matching function per metric, named for what it compares:

- :func:`gsm8k_answer_matches`: the GSM8K-style final answer of a generation (``#### x``,
  ``\\boxed{x}``, "final answer is x", else the last number), normalized as a number or text,
  against the reference (the cot capability's ``accuracy``).
- :func:`boxed_answer_matches`: the last ``\\boxed{}`` answer (else the whole text or its
  extracted final answer) in canonical LaTeX form against the reference (reasoning's ``accuracy``,
  thinking's ``accuracy``).
"""

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


def gsm8k_answer_matches(generated: str, reference: str) -> bool:
    """True when the GSM8K-style final answer of ``generated`` (:func:`extract_answer`) equals
    ``reference`` after :func:`normalize`."""
    got = normalize(extract_answer(generated))
    return got is not None and got == normalize(reference)


# --- math answers: \boxed{} extraction and canonical forms (reasoning, thinking) ------------------

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_DROP = re.compile(
    r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])|\\displaystyle|\\[!,;: ]|~|\\\(|\\\)|\\\[|\\\]"
)
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|\\circ|\\degree|°")
_UNIT = re.compile(r"^(.*\d)\s*\\(?:text|mbox|mathrm)\{\s*[a-zA-Z][^{}]*\}(?:\^\{?\d\}?)?$")
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\{([^{}]*)\}")
_FRAC_DIGITS = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_DIGIT_DENOMINATOR = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_FRAC_DIGIT_NUMERATOR = re.compile(r"\\frac\s*(\d)\s*\{")
_SQRT_DIGIT = re.compile(r"\\sqrt\s*(\d+)")
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d])")
_MIXED = re.compile(r"^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
_NUMERIC_FRAC = re.compile(r"\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")
_ATOM = r"[^{}+\-*/=,]*(?:\{[^{}]*\}[^{}+\-*/=,]*)*"
_ATOMIC_FRAC = re.compile(r"\\frac\{(" + _ATOM + r")\}\{(" + _ATOM + r")\}")
_VARIABLE = re.compile(r"^[a-zA-Z]\w{0,2}=([^=]+)$")
_CHOICE = re.compile(r"^\(([a-z])\)$")


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are balanced, so ``\\boxed{\\frac{\\sqrt{3}}{2}}`` gives ``\\frac{\\sqrt{3}}{2}``; the
    brace-less form ``\\boxed 5`` gives ``5``. A box cut off by the generation limit is passed over
    for an earlier complete one. Returns None when there is no non-empty box.
    """
    starts = sorted((m.end() for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd), text)),
                    reverse=True)
    for start in starts:
        content = _box_content(text, start)
        if content:
            return content
    return None


def _box_content(text: str, start: int) -> str | None:
    """The argument of a box command whose name ends at ``start``."""
    rest = text[start:]
    if rest.startswith(" "):
        token = re.match(r"\s+([^\s$]+)", rest)
        return token.group(1).rstrip(".") if token else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i].strip()
    return None


def _clean_latex(answer: str) -> str:
    """Strip presentation-only LaTeX: delimiters, \\left/\\right, spacing, units, \\text{}, %, $."""
    text = answer.strip().replace("\u2212", "-").replace("\\$", "").replace("$", "")
    text = _DROP.sub("", text)
    text = _DEGREES.sub("", text)
    text = text.replace("\\%", "").replace("%", "").replace("{,}", ",")
    text = _UNIT.sub(r"\1", text.strip())
    while _WRAPPER.search(text):
        text = _WRAPPER.sub(r"\1", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_DIGIT_DENOMINATOR.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_DIGIT_NUMERATOR.sub(r"\\frac{\1}{", text)
    text = _SQRT_DIGIT.sub(r"\\sqrt{\1}", text)
    text = re.sub(r"\s+", "", text).rstrip(".")
    while text.startswith("{") and text.endswith("}") and _balanced(text[1:-1]):
        text = text[1:-1]
    variable = _VARIABLE.match(text)
    return variable.group(1) if variable else text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _number(text: str) -> Fraction | None:
    """``text`` as an exact number (integer, decimal, ``p/q``, ``\\frac{p}{q}``, mixed), else None."""
    mixed = _MIXED.match(text)
    if mixed:
        sign, whole, num, den = mixed.groups()
        if int(den) == 0:
            return None
        value = int(whole) + Fraction(int(num), int(den))
        return -value if sign else value
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _NUMERIC_FRAC.sub(r"\1/\2", text)
    parts = [p.strip("()") if p.startswith("(") and p.endswith(")") else p for p in text.split("/")]
    if not 1 <= len(parts) <= 2:
        return None
    try:
        values = [Fraction(p) for p in parts]
        return values[0] / values[1] if len(values) == 2 else values[0]
    except (ValueError, ZeroDivisionError):
        return None


def _format_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _canonical_term(text: str) -> str:
    """One cleaned term: a number as ``n`` or ``n/d``; anything else lower-cased, atomic
    ``\\frac{a}{b}`` written ``a/b``."""
    value = _number(text)
    if value is not None:
        return _format_number(value)
    text = _ATOMIC_FRAC.sub(r"\1/\2", text).lower()
    choice = _CHOICE.match(text)
    return choice.group(1) if choice else text


def canonical_answer(answer: str | None) -> str | None:
    """A canonical form of a final answer, so that equal answers compare equal as strings.

    Numbers become ``n`` or ``n/d`` (``1,234.0`` -> ``1234``; ``0.5``, ``1/2``, ``\\frac{1}{2}``,
    ``\\dfrac12`` -> ``1/2``; ``$5``, ``50\\%``, ``90^\\circ``, ``5\\text{ cm}`` lose the sign or
    unit). Other answers lose presentation-only LaTeX (``\\left(``, ``\\text{}``, spacing, ``x =``)
    and whitespace and are lower-cased; tuples, intervals and lists are canonicalized element-wise.
    Applying it twice gives the same result. Returns None for a missing or empty answer.
    """
    if answer is None:
        return None
    text = _clean_latex(answer)
    if not text:
        return None
    if _number(text) is not None:
        return _canonical_term(text)
    opener, closer = (text[0], text[-1]) if text[0] in "([" and text[-1] in ")]" else ("", "")
    inner = text[len(opener):len(text) - len(closer)]
    parts = _split_top_level(inner)
    if len(parts) > 1:
        return opener + ",".join(_canonical_term(p) for p in parts) + closer
    return _canonical_term(text)


def same_answer(got: str | None, reference: str | None) -> bool:
    """True when both answers exist and have the same :func:`canonical_answer`."""
    left = canonical_answer(got)
    return left is not None and left == canonical_answer(reference)


def boxed_answer_matches(generated: str, reference: str) -> bool:
    """True when the answer of ``generated`` matches ``reference`` in :func:`canonical_answer` form.

    A ``\\boxed{}`` answer is decisive; without one, the whole text or its extracted final answer
    ("final answer is x", the last number) may match.
    """
    boxed = last_boxed(generated)
    if boxed is not None:
        return same_answer(boxed, reference)
    return same_answer(generated, reference) or same_answer(extract_answer(generated), reference)
