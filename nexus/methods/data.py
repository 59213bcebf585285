"""The rows each training method trains on, read from a capability's manifest.

The organizer lists a capability's own example files under ``files`` and the files its methods may
use (preference pairs, KTO labels, plain text, safety prompts) under ``method_files`` (see
:mod:`nexus.organize`). This module turns those records into TRL's dataset rows:

- preference: ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``
- unpaired preference (KTO): ``{"prompt": [messages], "completion": [messages], "label": bool}``
- text: ``{"text": str}``
- safety prompts: ``{"prompt": str, "label": "harmful" | "harmless"}``

Every row is also checked for text that is really binary data (:func:`binary_reason`: control
characters); :mod:`nexus.record_checks` applies the same check, and :func:`label_reason`, to the
capabilities' examples, so organize, prepare and training judge a record alike.

A method that needs a kind the capability has no file for fails up front with
:class:`MethodDataError`, naming the manifest and the kinds it needs, except preference methods,
which build pairs from the capability's own examples (see :mod:`nexus.methods.rows`). Chat-shaped
fields are read by :mod:`nexus.conversations`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nexus.capabilities import SkipRecord
from nexus.conversations import (
    CONVERSATION_KEYS,
    QUERY_KEYS,
    ConversationError,
    chat_messages,
    first_text,
    prompt_messages,
    reply_text,
    split_conversation,
    text_messages,
)
from nexus.readers import iter_records
from nexus.transcripts import is_transcript, split_transcript_pair

# The organizer's record kinds each method data kind is read from.
KIND_OF_NEED = {"preference": "preference", "unpaired_preference": "unpaired_preference",
                "text": "text", "safety_prompts": "prompt_only"}
LABEL_KEYS = ("label", "kto_tag")
"""The KTO label keys (TRL ``label``, LLaMA-Factory ``kto_tag``): booleans."""
BOOLEAN_WORDS = ("true", "false")
"""Strings that spell a boolean (any case): a label given as one is a mistyped KTO label."""
CONTROL_SHARE = 0.25
"""Text whose characters are at least this share control characters is binary data, not text."""
SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, RecursionError)
"""What a converter or formatter raises on a record of a shape it does not expect: the record is
dropped with the error as its reason (counted), never a crash of the run."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")  # tab, newline, CR are text


class MethodDataError(ValueError):
    """A method's data is missing or unusable; the message names the file or manifest."""


def method_files(organized_dir: str | Path, capability: str, kind: str) -> list[dict[str, Any]]:
    """The manifest entries of ``kind`` routed to ``capability`` for its methods."""
    manifest = Path(organized_dir) / capability / "manifest.json"
    if not manifest.is_file():
        return []
    entries = json.loads(manifest.read_text(encoding="utf-8")).get("method_files", [])
    return [e for e in entries if e.get("kind") == kind]


def label_reason(record: dict[str, Any], required: bool = False) -> str | None:
    """Why the record's KTO label (:data:`LABEL_KEYS`) is unusable, or None.

    A label spelled as a string (``"true"``, ``"False"``, ...) is always refused: the file is a
    KTO file whose labels lost their type, and training it as anything else would drop them.
    With ``required`` (KTO rows), a missing or non-boolean label is refused too.
    """
    key = next((k for k in LABEL_KEYS if k in record), None)
    if key is None:
        return "no boolean label / kto_tag" if required else None
    value = record[key]
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
        return f"{key} is the string {value.strip()[:10]!r}, expected a boolean (true/false)"
    if required and not isinstance(value, bool):
        return f"{key} is {json_type(value)}, expected a boolean (true/false)"
    return None


def json_type(value: Any) -> str:
    """The JSON name of a value's type, with its article (``a string``, ``null``, ``an object``)."""
    if value is None:
        return "null"
    names = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "a list"),
             (dict, "an object"))
    return next((name for kind, name in names if isinstance(value, kind)), f"a {type(value).__name__}")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def binary_reason(row: dict[str, Any]) -> str | None:
    """Why a row or example holds binary data rather than text, or None: the first of its texts
    (at any depth) of which :data:`CONTROL_SHARE` or more are control characters, named by the
    row's key that holds it."""
    for key, value in row.items():
        for text in _strings(value):
            share = len(_CONTROL.findall(text)) / len(text) if text else 0.0
            if share >= CONTROL_SHARE:
                what = "mostly" if share > 0.5 else f"{share:.0%}"
                return f"{key} is {what} control characters (binary data, not text)"
    return None


def _split(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A conversation's prompt (every turn before the last assistant reply) and that reply."""
    prompt, reply = split_conversation(messages)
    return prompt, _reply(reply)


def _reply(value: Any, name: str = "the reply") -> list[dict[str, str]]:
    """A chosen/rejected value (a string, a ShareGPT turn, or messages) as assistant messages.

    Raises:
        SkipRecord: the reply is empty.
    """
    text = reply_text(value)
    if not text.strip():
        raise SkipRecord(f"{name} is empty")
    return [{"role": "assistant", "content": text}]


def preference_row(record: dict[str, Any]) -> dict[str, Any]:
    """One preference record (TRL, LLaMA-Factory/ms-swift, LLaMA-Factory v1, or two whole
    ``Human:``/``Assistant:`` transcripts, :mod:`nexus.transcripts`) as a TRL pair.

    Raises:
        SkipRecord: no rejected reply, an empty reply, or the same reply chosen and rejected.
        ConversationError: the prompt or a reply cannot be read.
    """
    row = _pair(record)
    if row["chosen"] == row["rejected"]:
        raise SkipRecord("chosen and rejected are the same reply (nothing to prefer)")
    return row


def _pair(record: dict[str, Any]) -> dict[str, Any]:
    if "chosen_messages" in record:
        prompt, chosen = _split(text_messages(record["chosen_messages"]))
        _, rejected = _split(text_messages(record.get("rejected_messages")))
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    rejected_key = next((k for k in ("rejected", "rejected_response", "rejected_messages") if k in record),
                        None)
    if rejected_key is None:
        raise SkipRecord("no rejected reply")
    chosen_value = record.get("chosen", record.get("response"))
    implicit = "prompt" not in record and not any(k in record for k in CONVERSATION_KEYS)
    if implicit and is_transcript(chosen_value) and is_transcript(record[rejected_key]):  # HH-RLHF form
        prompt, chosen, rejected = split_transcript_pair(chosen_value, record[rejected_key])
        return {"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}
    if isinstance(chosen_value, list) and "prompt" not in record and "conversations" not in record:
        prompt, chosen = _split(text_messages(chosen_value))  # implicit prompt
        _, rejected = _split(text_messages(record[rejected_key]))
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if isinstance(record.get("conversations"), list) and chosen_value is None:  # ms-swift: the last turn
        prompt, chosen = _split(chat_messages(record))
        return {"prompt": prompt, "chosen": chosen, "rejected": _reply(record[rejected_key], rejected_key)}
    return {"prompt": prompt_messages(record), "chosen": _reply(chosen_value, "chosen"),
            "rejected": _reply(record[rejected_key], rejected_key)}


def unpaired_row(record: dict[str, Any]) -> dict[str, Any]:
    """One KTO record (TRL ``prompt``/``completion``/``label`` or messages + ``label``/``kto_tag``)."""
    reason = label_reason(record, required=True)
    if reason:
        raise SkipRecord(reason)
    label = record.get("label", record.get("kto_tag"))
    if "completion" in record:
        return {"prompt": prompt_messages(record), "completion": _reply(record["completion"], "completion"),
                "label": label}
    prompt, completion = _split(chat_messages(record))
    return {"prompt": prompt, "completion": completion, "label": label}


def text_row(record: dict[str, Any]) -> dict[str, Any]:
    """One plain-text record (``text``)."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise SkipRecord("no text")
    return {"text": text}


def safety_row(record: dict[str, Any], label: str) -> dict[str, Any]:
    """One safety prompt (``instruction``/``prompt``/...) with the label its file name gives."""
    prompt = first_text(record, QUERY_KEYS)
    if prompt is None:
        raise SkipRecord("no prompt text")
    return {"prompt": prompt.strip(), "label": label}


def _read(entries: list[dict[str, Any]], convert: Callable[[dict[str, Any], dict[str, Any]], dict],
          dropped: dict[str, int], counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    for entry in entries:
        counts.setdefault(entry["path"], 0)
        for record in iter_records(entry["path"]):
            try:
                row = convert(record, entry)
                problem = binary_reason(row)
                if problem:
                    raise SkipRecord(problem)
            except (SkipRecord, ConversationError, *SHAPE_ERRORS) as error:
                reason = error if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                key = f"{entry['path']}: {reason}"
                dropped[key] = dropped.get(key, 0) + 1
                continue
            counts[entry["path"]] += 1
            yield row


CONVERTERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "preference": lambda record, entry: preference_row(record),
    "unpaired_preference": lambda record, entry: unpaired_row(record),
    "text": lambda record, entry: text_row(record),
    "safety_prompts": lambda record, entry: safety_row(record, entry.get("label") or ""),
}


def load_rows(need: str, organized_dir: str | Path, capability: str, dropped: dict[str, int] | None = None,
              counts: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the method data kind ``need`` for ``capability``, and the files that gave at least
    one row. ``counts`` (when given) receives the rows of every file read, 0 for a file none of
    whose records could be used; ``dropped`` the reasons, per file.

    Safety prompts come only from files labelled harmful or harmless by the organizer.
    """
    dropped = {} if dropped is None else dropped
    counts = {} if counts is None else counts
    entries = method_files(organized_dir, capability, KIND_OF_NEED[need])
    if need == "safety_prompts":
        entries = [e for e in entries if e.get("label") in ("harmful", "harmless")]
    rows = list(_read(entries, CONVERTERS[need], dropped, counts))
    return rows, [path for path, n in counts.items() if n]


def missing_data_message(method: str, need: str, capability: str, organized_dir: str | Path) -> str:
    """The one-line error for a method whose data kind the capability lacks."""
    kind = KIND_OF_NEED[need]
    hint = {"text": "plain-text records ({\"text\": ...})",
            "unpaired_preference": "KTO records (prompt/completion + boolean label)",
            "safety_prompts": "prompt files named *harmful*.json and *harmless*.json",
            "preference": "preference pairs (prompt/chosen/rejected)"}[need]
    return (f"method '{method}' needs {kind} data, and {Path(organized_dir) / capability / 'manifest.json'} "
            f"lists none for capability '{capability}': drop {hint} into data/raw/{capability}/ and rerun "
            f"the organize stage")
