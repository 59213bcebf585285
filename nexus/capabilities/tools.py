"""tools: function calling from tool schemas.

Trains the model to answer a request with the calls it needs, as one JSON list, and scores exact
call match on a held-out split (greedy generation).

Canonical call format (training target, ``reference`` and what :data:`nexus.chat.TOOLS_SYSTEM_PROMPT`
asks for): a JSON list, one object per call, ``name`` first, argument keys sorted (recursively),
values untouched, non-ASCII kept::

    [{"name": "live_giveaways_by_type", "arguments": {"type": "beta"}}, {"name": ..., ...}]

Tool schemas are normalized to the JSON-schema form ``transformers``' ``apply_chat_template(tools=...)``
documents: ``{"type": "function", "function": {"name", "description", "parameters": {"type":
"object", "properties": {...}, "required": [...]}}}``; Python type hints (xLAM's ``"str, optional"``,
``"List[int]"``) become JSON-schema types. :mod:`nexus.chat` passes them to templates that read
``tools`` and writes them into a system message for the others (SmolLM2's ChatML).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``xlam``: ``{"query": "...", "answers": "[{\\"name\\": ..., \\"arguments\\": {...}}]",
  "tools": "[{\\"name\\": ..., \\"description\\": ..., \\"parameters\\": {\\"p\\": {\\"type\\":
  \\"str, optional\\", ...}}}]"}`` (Salesforce/xlam-function-calling-60k; JSON or parquet).
- ``sharegpt_tools``: ``{"conversations": [{"from": "human"|"gpt"|"function_call"|"observation",
  "value": ...}], "tools": "<JSON list>", "system"?: ...}`` (LLaMA-Factory, e.g. glaive_toolcall).
- ``messages_tools``: ``{"messages": [{"role", "content": str | [{"type": "text"|"reasoning"|
  "tool_call", "value"|"text": ...}], "tool_calls"?: [...]}], "tools": ...}`` (OpenAI/TRL
  ``tool_calls`` and LLaMA-Factory v1 ``tool_call`` content parts).

Conversations give one example per record, at the first assistant turn that calls tools: the prompt is
the conversation before it, the completion that turn's calls (:func:`conversation_examples` returns
one per calling turn). Earlier calling turns become assistant messages holding the canonical JSON,
tool results ``tool`` messages (:mod:`nexus.chat` turns them into ``Tool result:`` user messages for
templates without tools support), text and reasoning parts of calling turns are dropped (the target
is the calls and nothing else), and reasoning parts of other assistant turns too (the ``thinking``
capability trains those).

Scoring (:func:`score`): the generated text is parsed as JSON (surrounding whitespace, a ```json
fence, or Hermes/Qwen-style ``<tool_call>{...}</tool_call>`` blocks are tolerated; one object counts as
a list of one). ``exact_match``: the multiset of (name, arguments) equals the reference's (call order
ignored); arguments compare as parsed JSON: object key order ignored, list order kept, ``1 == 1.0``,
but ``"1" != 1`` and ``true != 1``. ``name_match``: the multiset of names equals. ``valid_json``: the
text parsed into a list of calls.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter
from nexus.conversations import Turn, as_calls, record_tools, record_turns, with_system

METRIC = "exact_match"
REWARD_KEYS = ("exact_match", "name_match", "valid_json")  # grpo / ppo reward: the mean of these shares

JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_PY_TYPES = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
    "tuple": "array", "set": "array", "sequence": "array", "dict": "object", "object": "object",
    "mapping": "object", "none": "null", "null": "null",
}
_HINT = re.compile(r"\s*(\w+)\s*(?:\[(.*)\])?\s*")
_OPTIONAL = re.compile(r",\s*optional\s*$", re.IGNORECASE)
_FENCE = re.compile(r"```[\w-]*\s*(.*?)\s*```", re.DOTALL)
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


# --- calls -----------------------------------------------------------------------------------


def canonical_calls(calls: list[dict[str, Any]]) -> str:
    """The canonical rendering of calls (module docstring): training target and reference."""
    return "[" + ", ".join(
        f'{{"name": {json.dumps(c["name"], ensure_ascii=False)}, '
        f'"arguments": {json.dumps(c["arguments"], ensure_ascii=False, sort_keys=True)}}}'
        for c in calls
    ) + "]"


def parse_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls in a generated answer, or None when it is not a JSON call (list).

    Tolerates surrounding whitespace, one fenced block (```json ... ```) making up the whole answer,
    and ``<tool_call>{...}</tool_call>`` blocks (the format many tool-calling templates ask for).
    """
    text = text.strip()
    fence = _FENCE.fullmatch(text)
    if fence:
        text = fence.group(1)
    try:
        return as_calls(json.loads(text))
    except ValueError:
        pass
    blocks = _TOOL_CALL_TAG.findall(text)
    if not blocks:
        return None
    calls: list[dict[str, Any]] = []
    for block in blocks:
        try:
            found = as_calls(json.loads(block))
        except ValueError:
            return None
        if found is None:
            return None
        calls.extend(found)
    return calls


def _canonical_value(value: Any) -> Any:
    """A hashable form in which equal JSON values compare equal (``1 == 1.0``, bools kept apart)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), _canonical_value(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(_canonical_value(v) for v in value))
    return ("other", repr(value))


def _call_key(call: dict[str, Any]) -> tuple[str, Any]:
    return call["name"], _canonical_value(call["arguments"])


def score(generated: str, example: Example) -> dict[str, float]:
    """``exact_match``, ``name_match`` and ``valid_json`` of one answer (see the module docstring)."""
    reference = parse_calls(example["reference"]) or []
    calls = parse_calls(generated)
    if calls is None:
        return {METRIC: 0.0, "name_match": 0.0, "valid_json": 0.0}
    return {
        METRIC: float(Counter(map(_call_key, calls)) == Counter(map(_call_key, reference))),
        "name_match": float(Counter(c["name"] for c in calls) == Counter(c["name"] for c in reference)),
        "valid_json": 1.0,
    }


# --- tool schemas ------------------------------------------------------------------------------


def _schema_of_hint(hint: str) -> dict[str, Any]:
    """A JSON-schema type for a Python type hint (``"List[int]"`` -> array of integer); {} if unknown."""
    hint = _OPTIONAL.sub("", hint).strip()
    if hint.lower() in JSON_TYPES:
        return {"type": hint.lower()}
    match = _HINT.fullmatch(hint)
    if not match:
        return {}
    base, inner = match.group(1).lower(), match.group(2)
    if base == "optional" and inner:
        return _schema_of_hint(inner)
    json_type = _PY_TYPES.get(base)
    if json_type is None:
        return {}
    schema: dict[str, Any] = {"type": json_type}
    if json_type == "array" and inner and "," not in inner:
        items = _schema_of_hint(inner)
        if items:
            schema["items"] = items
    return schema


def _property(spec: Any) -> dict[str, Any]:
    """One parameter's schema with a JSON-schema ``type`` (an unknown hint is kept in the description)."""
    if not isinstance(spec, dict):
        return {"description": str(spec)}
    prop = dict(spec)
    hint = prop.get("type")
    if isinstance(hint, str) and hint not in JSON_TYPES:
        converted = _schema_of_hint(hint)
        prop.pop("type")
        if converted:
            prop = {**converted, **prop}  # the source's own keys (items, enum, ...) win
        else:
            prop["description"] = f"{prop.get('description', '')} (type: {hint})".strip()
    if isinstance(prop.get("items"), dict):
        prop["items"] = _property(prop["items"])
    return prop


def _is_schema_style(params: dict[str, Any]) -> bool:
    """True for ``{"type": "object", "properties": ...}``; False for xLAM's ``{name: spec}`` map."""
    if isinstance(params.get("type"), str):
        return True
    props = params.get("properties")
    return (set(params) <= {"properties", "required"} and isinstance(props, dict)
            and all(isinstance(v, dict) for v in props.values()))


def normalize_tool(tool: Any) -> dict[str, Any]:
    """A tool schema in the form chat templates expect (module docstring).

    Raises:
        SkipRecord: the schema is not an object with a function name.
    """
    if not isinstance(tool, dict):
        raise SkipRecord("a tools entry is not a JSON object")
    fn = tool["function"] if isinstance(tool.get("function"), dict) else tool
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SkipRecord("a tool schema has no function name")
    params = fn.get("parameters") or {}
    if not isinstance(params, dict):
        raise SkipRecord("a tool schema's parameters are not a JSON object")
    if _is_schema_style(params):
        props = params.get("properties") or {}
        if not isinstance(props, dict):
            raise SkipRecord("a tool schema's parameters.properties is not a JSON object")
        required = params.get("required", fn.get("required", []))
    else:  # xLAM: {param: {"type": "str, optional", "description", "default"}}
        props = params
        required = [k for k, v in params.items()
                    if not (isinstance(v, dict) and _OPTIONAL.search(str(v.get("type", ""))))]
    required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    parameters = {"type": "object", "properties": {k: _property(v) for k, v in props.items()},
                  "required": required}
    return {"type": "function", "function": {"name": name.strip(),
                                             "description": str(fn.get("description") or ""),
                                             "parameters": parameters}}


def _tools(record: dict[str, Any]) -> list[dict[str, Any]]:
    tools = record_tools(record)
    if not tools:
        raise SkipRecord("no tools list (the schemas the calls need)")
    return [normalize_tool(t) for t in tools]


def _checked(calls: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {t["function"]["name"] for t in tools}
    if any(c["name"] not in names for c in calls):
        raise SkipRecord("a call names a function missing from the tools list")
    return calls


# --- formatters --------------------------------------------------------------------------------


def _example(prompt: list[dict[str, str]], calls: list[dict[str, Any]],
             tools: list[dict[str, Any]]) -> Example:
    target = canonical_calls(calls)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": target}],
            "reference": target, "tools": tools}


@formatter
def format_xlam(record: dict[str, Any]) -> Example:
    """xLAM ``query``/``answers``/``tools`` (JSON strings) -> user query, canonical calls, schemas."""
    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        raise SkipRecord("no query")
    calls = as_calls(record.get("answers"))
    if calls is None:
        raise SkipRecord("answers is not a JSON list of {name, arguments} calls")
    if not calls:
        raise SkipRecord("answers holds no call (nothing to learn or score)")
    tools = _tools(record)
    return _example([{"role": "user", "content": query.strip()}], _checked(calls, tools), tools)


def _conversation_examples(turns: list[Turn], tools: list[dict[str, Any]]) -> list[Example]:
    examples: list[Example] = []
    history: list[dict[str, str]] = []
    for turn in turns:
        if turn.role == "assistant" and turn.calls:
            calls = list(turn.calls)
            if any(m["role"] == "user" for m in history):
                examples.append(_example(list(history), _checked(calls, tools), tools))
            history.append({"role": "assistant", "content": canonical_calls(calls)})
        else:
            history.append({"role": turn.role, "content": turn.text})
    return examples


@formatter
def conversation_examples(record: dict[str, Any], fmt: str = "sharegpt_tools") -> list[Example]:
    """One example per calling assistant turn of a conversation record; the formatters keep the first.

    ``fmt`` names the detected format (``sharegpt_tools`` or ``messages_tools``); both are read by
    :func:`nexus.conversations.record_turns`, the record's ``system`` prompt first when the
    conversation has none.

    Raises:
        SkipRecord: no tool call after a user turn, no tools list, or a malformed turn.
    """
    del fmt  # one parser for every layout
    turns = with_system(record, record_turns(record))
    if not any(t.calls for t in turns):
        raise SkipRecord("conversation has no tool call (nothing to learn or score)")
    examples = _conversation_examples(turns, _tools(record))
    if not examples:
        raise SkipRecord("conversation has no tool call after a user turn")
    return examples


def format_sharegpt_tools(record: dict[str, Any]) -> Example:
    """LLaMA-Factory ``conversations`` with ``function_call``/``observation`` turns -> first call."""
    return conversation_examples(record, "sharegpt_tools")[0]


def format_messages_tools(record: dict[str, Any]) -> Example:
    """OpenAI/TRL ``messages`` with ``tool_calls`` (or ``tool_call`` parts) -> first call."""
    return conversation_examples(record, "messages_tools")[0]


FORMATTERS = {
    "xlam": format_xlam,
    "sharegpt_tools": format_sharegpt_tools,
    "messages_tools": format_messages_tools,
}
