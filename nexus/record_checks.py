"""Is one record usable for its detected format? The same code that trains on it decides.

The organizer asks :func:`check_record` for every record of every data file, so bad records are
counted and reported at organize time, not discovered in training. A record is usable when the
code that turns it into training data accepts it: the formatters of the capabilities that take
its format (:func:`nexus.capabilities.formats_of`, the organizer's routing) or, for the record
kinds training methods read (preference pairs, KTO labels, plain text, safety prompts), the row
converter of :mod:`nexus.methods.data`. There is no second schema here; what this module adds is:

- checks no formatter makes, on the record itself (:func:`record_problem`): a KTO label spelled as a
  string (``"true"``) in any record with a reply, which would otherwise train as SFT with the label
  dropped; media paths (``images``/``videos``/``audios``, image-caption paths, media parts of the
  turns), which must be relative, must resolve inside the data file's own folder (its
  ``source.parent``, symlinks followed: the data root of a file is the folder it sits in, so a
  dataset ships its media beside or below its records, as LLaMA-Factory's ``mllm_demo_data/`` does)
  and must exist; http(s) and ``data:`` URLs are left to the loader;
- text that is binary data (:func:`nexus.methods.data.binary_reason`, control characters), checked on
  what would be trained (the formatted example or row);
- a precise reason when the converter refuses: a field it read with a type that field never has
  (``conversations is a string, expected a list of turns``), or the turn the conversation parser
  refused (``turn 3 of conversations: unknown 'from' role 'robot' ...``);
- a record whose shape makes a converter raise anything else (``TypeError``, ...) is refused with
  that error as the reason, never a crash.

The prepare stage formats records through :func:`format_record` (:mod:`nexus.examples`), so
training skips, with the same counted reason, what the organizer reported. No torch import.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from nexus import capabilities
from nexus.conversations import (
    CONVERSATION_KEYS,
    QUERY_KEYS,
    RESPONSE_KEYS,
    ConversationError,
    json_value,
    parse_turns,
)
from nexus.methods.data import (
    CONVERTERS,
    KIND_OF_NEED,
    SHAPE_ERRORS,
    binary_reason,
    json_type,
    label_reason,
)
from nexus.registry import CAPABILITIES

MEDIA_LIST_KEYS = {"images": "image", "videos": "video", "audios": "audio"}
"""Record keys listing media files (LLaMA-Factory/TRL), with what each entry is."""
CAPTION_MEDIA_KEYS = {"image_caption": ("image", "image_path", "file_name"), "video_caption": ("video", "video_path")}
"""Keys of a caption record's media, per kind (:data:`nexus.formats.RULES` ``image_caption``, ``video_caption``)."""
MEDIA_RECORD_KINDS = ("image", "video", "audio", "video_audio", "image_caption", "video_caption")
URL_PREFIXES = ("http://", "https://", "data:")
"""Media given as these is fetched or decoded by the loader, not read from the data folder."""
TURN_KEYS = (*CONVERSATION_KEYS, "chosen_messages", "rejected_messages", "prompt", "completion", "chosen",
             "rejected")
"""Keys whose value may be a list of turns (:func:`refused_turn` looks for the refused one there)."""
NO_LABEL_KINDS = ("text", "prompt_only")
"""Record kinds without a reply: a ``label`` there is metadata, not a KTO label."""

_LIST = (list,)
_TEXT = (str,)
_EXPECTED: dict[str, tuple[tuple[type, ...], str]] = {
    **dict.fromkeys((*QUERY_KEYS, *RESPONSE_KEYS, "system", "text"), (_TEXT, "text")),
    **dict.fromkeys((*CONVERSATION_KEYS, "chosen_messages", "rejected_messages"), (_LIST, "a list of turns")),
    **dict.fromkeys(("prompt", "completion"), ((str, list), "text or a list of messages")),
    **dict.fromkeys(("chosen", "rejected", "rejected_response"), ((str, dict, list), "text, a turn or messages")),
    "completions": (_LIST, "a list of completions"),
    "answers": (_LIST, "a JSON list of {name, arguments} calls"),
    "tools": (_LIST, "a JSON list of tool schemas"),
    "history": (_LIST, "a list of [query, response] pairs"),
    "label": ((bool,), "a boolean (true/false)"),
    "kto_tag": ((bool,), "a boolean (true/false)"),
}
"""What the fields converters read hold (only to word a refusal precisely; never to accept)."""


# --- the entry point ----------------------------------------------------------------------------


def check_record(record: dict[str, Any], fmt: str | None, kind: str | None, source: Path) -> str | None:
    """None when ``record`` is usable for its detected format, else a one-line reason.

    Args:
        record: one record, as :func:`nexus.readers.iter_records` yields it.
        fmt: the file's detected format (a rule name of :data:`nexus.formats.RULES`).
        kind: the format's record kind (a key of :data:`nexus.formats.KINDS`).
        source: the data file the record comes from (media paths resolve against its folder).

    Returns:
        None, or the reason without the file name (the caller names the file and the record), e.g.
        ``label is the string 'true', expected a boolean (true/false)``.
    """
    problem = record_problem(record, kind, source)
    if problem:
        return problem
    reasons: dict[str, list[str]] = {}
    for user, convert in converters(fmt, kind):
        _, reason = format_record(convert, record)
        if reason is None:
            return None
        reasons.setdefault(reason, []).append(user)
    if len(reasons) > 1:  # each reader refuses it for its own reason: name who says what
        return "; ".join(f"{', '.join(users)}: {reason}" for reason, users in reasons.items())
    return next(iter(reasons), None)


@functools.cache
def converters(fmt: str | None, kind: str | None) -> tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...]:
    """``(reader, fn)`` for the code that turns a record of ``fmt``/``kind`` into training data:
    every capability formatter for ``fmt`` (registry order, named by the capability), then the
    method row converter for ``kind`` (named ``<need> rows``, e.g. ``preference rows``)."""
    found: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        (name, capabilities.load(name).FORMATTERS[fmt]) for name in CAPABILITIES
        if fmt is not None and fmt in capabilities.formats_of(name)
    ]
    need = next((n for n, k in KIND_OF_NEED.items() if k == kind), None)
    if need is not None:
        found.append((f"{need.replace('_', ' ')} rows", functools.partial(CONVERTERS[need], entry={})))
    return tuple(found)


def format_record(convert: Callable[[dict[str, Any]], Any], record: dict[str, Any]) -> tuple[Any, str | None]:
    """``(convert(record), None)``, or ``(None, reason)`` when ``convert`` refuses the record
    (:class:`nexus.capabilities.SkipRecord`, :class:`nexus.conversations.ConversationError`), raises
    on its shape (:data:`nexus.methods.data.SHAPE_ERRORS`), or yields binary data instead of text."""
    try:
        result = convert(record)
    except (capabilities.SkipRecord, ConversationError, *SHAPE_ERRORS) as error:
        return None, refusal_reason(convert, record, error)
    items = result if isinstance(result, list) else [result]
    problem = next((p for p in map(binary_reason, items) if p), None)
    return (None, problem) if problem else (result, None)


# --- checks no formatter makes -----------------------------------------------------------------------


def record_problem(record: dict[str, Any], kind: str | None, source: Path) -> str | None:
    """Why ``record`` is unusable whatever reads it (a string KTO label, a media path that is
    absolute, leaves ``source.parent`` or is missing), or None."""
    if kind not in NO_LABEL_KINDS:
        reason = label_reason(record)
        if reason:
            return reason
    if kind in MEDIA_RECORD_KINDS:
        return media_problem(record, kind, source)
    return None


def media_problem(record: dict[str, Any], kind: str, source: Path) -> str | None:
    """Why a media reference of ``record`` is unusable, or None (see the module docstring)."""
    folder = Path(source).parent
    for what, value in _media_refs(record, kind):
        reason = path_problem(value, what, folder)
        if reason:
            return reason
    return None


def _media_refs(record: dict[str, Any], kind: str) -> Iterator[tuple[str, Any]]:
    """(what, path-like value) of every media file the record refers to."""
    for key, what in MEDIA_LIST_KEYS.items():
        value = json_value(record.get(key))
        items = value if isinstance(value, list) else [value] if value else []
        for number, item in enumerate(items, 1):
            yield f"{what} {number} of {key}", _feature_path(item)
    if kind in CAPTION_MEDIA_KEYS:
        key = next((k for k in CAPTION_MEDIA_KEYS[kind] if k in record), None)
        if key is not None:
            yield key, _feature_path(record[key])
    for key in CONVERSATION_KEYS:
        try:
            turns = parse_turns(record[key]) if key in record else []
        except ConversationError:
            continue  # the converter reports it
        for number, turn in enumerate(turns, 1):
            parts = turn.content if isinstance(turn.content, list) else []
            for part in parts:
                if part.get("type") in MEDIA_LIST_KEYS.values() and isinstance(part.get("source"), str):
                    yield f"{part['type']} in turn {number} of {key}", part["source"]


def _feature_path(item: Any) -> Any:
    """A datasets Image/Audio feature ``{"bytes", "path"}`` without bytes stands for its path."""
    return item.get("path") if isinstance(item, dict) and not item.get("bytes") else item


def path_problem(value: Any, what: str, folder: Path) -> str | None:
    """Why ``value`` is not a usable media path relative to ``folder``, or None."""
    if value is None or (isinstance(value, dict) and value.get("bytes")):
        return None  # none given (the turn's part points at the list) or embedded bytes
    if not isinstance(value, str) or not value.strip():
        return f"{what} is {json_type(value)}, expected a relative file path"
    if value.startswith(URL_PREFIXES):
        return None
    shown = value if len(value) <= 80 else value[:77] + "..."
    shown = shown if shown.isprintable() else shown.encode("unicode_escape").decode("ascii")
    if "://" in value:
        return f"{what} '{shown}' is a URL the loader cannot fetch (http, https or data: only)"
    if os.path.isabs(value) or PureWindowsPath(value).is_absolute() or value.startswith("~"):
        return f"{what} path '{shown}' is absolute; give it relative to the data file's folder"
    try:
        root = folder.resolve()
        target = (folder / value).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL byte
        return f"{what} path '{shown}' cannot be resolved ({err})"
    if not target.is_relative_to(root):
        return f"{what} path '{shown}' leaves the data file's folder"
    if not target.is_file():
        return f"{what} path '{shown}' is not a file in the data file's folder"
    return None


# --- precise reasons -------------------------------------------------------------------------------


class _Reads(dict):  # type: ignore[type-arg]
    """A record that remembers the keys looked up in it (to name the field a converter refused)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record)
        self.read: list[Any] = []

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.append(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.append(key)
        return super().__contains__(key)


def refusal_reason(convert: Callable[[dict[str, Any]], Any], record: dict[str, Any],
                   error: Exception) -> str:
    """The reason for a refusal: a read field of the wrong type, else the refused turn, else the
    converter's own message (an unexpected error is named with its type)."""
    watched = _Reads(record)
    try:
        convert(watched)
    except Exception:  # noqa: BLE001 - only the keys read matter; the error is ``error``
        pass
    read = list(dict.fromkeys(k for k in watched.read if isinstance(k, str) and k in record))
    parsing = isinstance(error, ConversationError) or isinstance(error.__cause__, ConversationError)
    reason = wrong_type(record, read, str(error)) or (refused_turn(record, read) if parsing else None)
    if reason:
        return reason
    if isinstance(error, (capabilities.SkipRecord, ConversationError)):
        return str(error)
    return f"the record's shape breaks the formatter ({type(error).__name__}: {error})"


def wrong_type(record: dict[str, Any], keys: list[str], refusal: str = "") -> str | None:
    """``<key> is <type>, expected <what>`` for the first of ``keys`` whose value has a type that
    field never has (:data:`_EXPECTED`), or None.

    Keys the ``refusal`` message names come first; a null value is blamed only when named there
    (most readers take a null as an absent optional field).
    """
    named = [k for k in keys if re.search(rf"\b{re.escape(k)}\b", refusal)]
    for key in [*named, *(k for k in keys if k not in named)]:
        value = record[key]
        if key not in _EXPECTED or (value is None and key not in named):
            continue
        types, what = _EXPECTED[key]
        decoded = json_value(value) if types == _LIST else value
        if types == _TEXT and isinstance(value, list) and len(value) == 1:
            decoded = value[0]  # a one-item list of text counts as the text
        if value is None or not isinstance(decoded, types):
            if isinstance(value, str) and types == _LIST and value.lstrip()[:1] in ("[", "{"):
                return f"{key} is not valid JSON (expected {what})"
            return f"{key} is {json_type(value)}, expected {what}"
    return None


def refused_turn(record: dict[str, Any], keys: list[str]) -> str | None:
    """``turn N of <key>: <why>`` for the first turn the conversation parser refuses on its own,
    among the conversations under ``keys``; None when every turn parses alone."""
    for key in (k for k in keys if k in TURN_KEYS):
        turns = json_value(record[key])
        if not isinstance(turns, list):
            continue
        for number, turn in enumerate(turns, 1):
            try:
                parse_turns([turn])
            except ConversationError as error:
                bad = _bad_json(turn) if "tool call" in str(error) else None
                return f"turn {number} of {key}: {bad or error}"
    return None


def _bad_json(value: Any, key: str = "") -> str | None:
    """``tool call arguments are not valid JSON`` (or ``'<key>' is not valid JSON``) when a value in
    ``value`` is JSON text of an object or list that does not parse, else None."""
    if isinstance(value, dict):
        return next((r for k, v in value.items() if (r := _bad_json(v, str(k)))), None)
    if isinstance(value, list):
        return next((r for v in value if (r := _bad_json(v, key))), None)
    if isinstance(value, str) and value.strip() and (key in ("arguments", "parameters")
                                                     or value.lstrip()[:1] in ("{", "[")):
        try:
            json.loads(value)
        except ValueError:
            return "tool call arguments are not valid JSON" if key in ("arguments", "parameters") else (
                f"'{key}' is not valid JSON")
        except RecursionError:
            return f"'{key or 'a value'}' is nested too deeply"
    return None
