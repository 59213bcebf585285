"""Record-format detection: which known dataset schema the first records of a file follow.

Detection is a table of rules (:data:`RULES`), tried in order, most specific first. A rule looks at
the keys common to the records it is shown and, where keys alone are ambiguous, at a few values
(roles in a conversation, content-part types, ``####`` in a GSM8K answer, thought markers). The key
vocabulary is the one TRL, LLaMA-Factory and ms-swift use:

- TRL dataset types: ``text``; ``messages``; ``prompt``/``completion``; ``prompt``/``chosen``/
  ``rejected`` (explicit or implicit prompt); ``prompt``/``completion``/``label`` (unpaired
  preference, KTO); ``prompt``/``completions``/``labels`` (stepwise supervision); ``images``;
  ``tools`` with assistant ``tool_calls``.
- LLaMA-Factory: alpaca (``instruction``/``input``/``output``), sharegpt (``conversations`` of
  ``from``/``value`` with ``human``/``gpt``/``function_call``/``observation`` turns, ``tools``),
  ranking (``conversations`` + ``chosen`` + ``rejected``), KTO (``messages`` + boolean ``label``),
  multimodal (``images``/``videos``/``audios``), v1 typed content parts (``{"type", "value"}``)
  and v1 preference (``chosen_messages``/``rejected_messages``).
- ms-swift's AutoPreprocessor: query keys ``query``/``prompt``/``input``/``instruction``/
  ``question``, response keys ``response``/``answer``/``output``/``target(s)``/``answer_key``/
  ``solution``, conversation keys ``messages``/``conversation``/``conversations``,
  ``rejected_response``.
- Dataset cards: GSM8K, NuminaMath-CoT, OpenThoughts-114k, s1K, xLAM function calling.

Each detection carries a record ``kind``; :mod:`nexus.registry` maps kinds to capabilities through
``Capability.record_kinds``. Nothing is guessed: records that match no rule get ``format=None`` and a
``why`` naming the keys that were seen. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus.conversations import (  # the record vocabulary (keys, roles, part types) is defined there
    AUDIO_PART_TYPES,
    CONTENT_KEYS,
    IMAGE_PART_TYPES,
    QUERY_KEYS,
    REASONING_PART_TYPES,
    REASONING_TURN_KEYS,
    RESPONSE_KEYS,
    TOOL_CALL_PART_TYPES,
    TOOL_CALL_ROLES,
    TOOL_RESULT_ROLES,
    VIDEO_PART_TYPES,
    json_value,
)
from nexus.record_profile import Profile, describe_conversation, key_list, keys_of

# --- vocabulary --------------------------------------------------------------------------------

THOUGHT_MARKERS = ("<|begin_of_thought|>", "<|end_of_thought|>")
THINK_TAGS = ("<think>", "<thinking>")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")

# Every record kind a rule can produce, with what such data is for. Kinds that no capability
# accepts yet are reported as unplaced with this description (see nexus.organize).
KINDS: dict[str, str] = {
    "instruction": "instruction/response pairs (alpaca-style SFT)",
    "chat": "multi-turn chat conversations (SFT)",
    "math_qa": "math word problems with a worked answer and a final '####' answer",
    "math_solution": "math problems with a worked solution",
    "reasoning_trace": "answers with an explicit reasoning trace (chain of thought, thinking)",
    "tool_calls": "conversations with function/tool calls and tool schemas",
    "preference": "preference data: used by preference methods (dpo/orpo)",
    "unpaired_preference": "unpaired preference data (a completion with a good/bad label): used by KTO",
    "stepwise_supervision": "step-wise labelled completions: used by process reward models (PRM)",
    "multiple_choice": "multiple-choice questions: used as an evaluation benchmark (e.g. MMLU)",
    "text": "plain text: used by continued pre-training",
    "prompt_only": "prompts without responses: used by online methods (grpo/ppo) and safety/refusal sets",
    "image": "conversations about images (vision QA)",
    "video": "conversations about video clips",
    "audio": "conversations about audio clips (audio QA, speech recognition)",
    "video_audio": "conversations about video clips with their audio track",
    "image_caption": "images with captions (text-to-image)",
    "video_caption": "video clips with captions (text-to-video)",
    "explainer_code": "explainer-video (Remotion) compositions written for a topic",
}


@dataclass(frozen=True)
class Detection:
    """The outcome of format detection.

    Attributes:
        format: the recognized schema (e.g. ``alpaca``), or None when no rule matched.
        kind: the record kind (a key of :data:`KINDS`), or None when no rule matched.
        why: human-readable reason naming the keys seen.
    """

    format: str | None
    kind: str | None
    why: str


# --- rules -----------------------------------------------------------------------------------

Matcher = Callable[[Profile], "str | None"]


@dataclass(frozen=True)
class Rule:
    """One known schema.

    Attributes:
        format: the schema's name, reported as ``Detection.format``.
        kind: the record kind it produces (a key of :data:`KINDS`).
        match: returns the reason it matched (naming the keys seen), or None.
        source: whose convention this is (TRL, LLaMA-Factory, ms-swift, a dataset card).
    """

    format: str
    kind: str
    match: Matcher
    source: str


def _v1_preference(p: Profile) -> str | None:
    if p.has("chosen_messages", "rejected_messages"):
        return "keys chosen_messages + rejected_messages (LLaMA-Factory v1 preference pairs)"
    return None


def _conversation_preference(p: Profile) -> str | None:
    if p.conv_key and p.has("chosen", "rejected"):
        return (f"keys {p.conv_key} + chosen + rejected (a shared conversation, then a preferred "
                f"and a rejected reply)")
    if p.conv_key and p.any_of(("rejected_response", "rejected_messages")):
        extra = p.any_of(("rejected_response", "rejected_messages"))[0]
        return f"keys {p.conv_key} + {extra} (ms-swift preference pairs)"
    return None


def _trl_preference(p: Profile) -> str | None:
    if not p.has("chosen", "rejected"):
        return None
    prompt = p.any_of(QUERY_KEYS)
    how = f"explicit prompt '{prompt[0]}'" if prompt else "implicit prompt (inside chosen/rejected)"
    return f"keys chosen + rejected with an {how}"


def _bool_label(p: Profile, key: str = "label") -> bool:
    return p.has(key) and all(isinstance(v, bool) for v in p.values(key))


def _trl_unpaired(p: Profile) -> str | None:
    if p.has("completion") and _bool_label(p):
        prompt = " + prompt" if p.has("prompt") else ""
        return f"keys completion{prompt} + boolean label (TRL unpaired preference / KTO)"
    return None


def _conversation_kto(p: Profile) -> str | None:
    for key in ("label", "kto_tag"):
        if p.conv_key and _bool_label(p, key):
            return f"keys {p.conv_key} + boolean {key} (LLaMA-Factory KTO)"
    return None


def _stepwise(p: Profile) -> str | None:
    if p.has("prompt", "completions", "labels"):
        return "keys prompt + completions + labels (TRL stepwise supervision)"
    return None


def _image_caption(p: Profile) -> str | None:
    if p.conv_key:
        return None
    image = p.any_of(("image", "image_path", "file_name"))
    caption = p.any_of(("text", "caption"))
    if not image or not caption:
        return None
    if image[0] == "file_name" and not all(
        str(v).lower().endswith(IMAGE_SUFFIXES) for v in p.values("file_name")
    ):
        return None
    return f"keys {image[0]} + {caption[0]} (an image and its caption)"


def _video_caption(p: Profile) -> str | None:
    if p.conv_key:
        return None
    video = p.any_of(("video", "video_path"))
    caption = p.any_of(("text", "caption"))
    if not video or not caption:
        return None
    return f"keys {video[0]} + {caption[0]} (a video clip and its caption)"


def _explainer_code(p: Profile) -> str | None:
    if p.has("topic", "composition"):
        return "keys topic + composition (a Remotion explainer for a topic)"
    return None


def _media(key: str, part_types: tuple[str, ...], label: str) -> Matcher:
    def match(p: Profile) -> str | None:
        if p.has(key) and any(json_value(v) for v in p.values(key)):
            conv = f"{p.conv_key} + " if p.conv_key else ""
            return f"keys {conv}{key} ({label} referenced by each record)"
        found = sorted(p.part_types() & set(part_types))
        if found:
            return f"'{p.conv_key}' content parts of type {', '.join(found)} ({label} in the turns)"
        return None

    return match


def _video_audio(p: Profile) -> str | None:
    video = _media("videos", VIDEO_PART_TYPES, "videos")(p)
    audio = _media("audios", AUDIO_PART_TYPES, "audios")(p)
    if video and audio:
        return f"{video}; {audio}"
    return None


def _xlam(p: Profile) -> str | None:
    if p.has("query", "answers", "tools"):
        return "keys query + answers + tools (xLAM/APIGen function calling: calls as JSON in 'answers')"
    return None


def _tool_note(p: Profile) -> str:
    listed = p.tools_listed()
    if not listed:
        return "no tools list"
    if listed == len(p.records):
        return "with a tools list"
    return f"a tools list in {listed} of the first {len(p.records)} records"


def _sharegpt_tools(p: Profile) -> str | None:
    if p.role_key() != "from":
        return None
    calls = sorted(p.roles() & set(TOOL_CALL_ROLES + TOOL_RESULT_ROLES))
    if calls:
        return f"{describe_conversation(p)}: tool turns {', '.join(calls)}, {_tool_note(p)}"
    if p.tools_listed():
        return f"{describe_conversation(p)} with a tools list (no call in the first records)"
    return None


def _openai_tools(p: Profile) -> str | None:
    if p.role_key() != "role":
        return None
    signs = []
    if any("tool_calls" in t or "function_call" in t for t in p.turns):
        signs.append("assistant tool_calls")
    results = sorted(p.roles() & set(TOOL_RESULT_ROLES))
    if results:
        signs.append(f"roles {', '.join(results)}")
    parts = sorted(p.part_types() & set(TOOL_CALL_PART_TYPES))
    if parts:
        signs.append(f"content parts of type {', '.join(parts)}")
    reasoning = sorted(p.part_types() & set(REASONING_PART_TYPES))
    also = f"; also {', '.join(reasoning)} parts (kept as reasoning inside tool use)" if reasoning else ""
    if signs:
        return f"{describe_conversation(p)}: {', '.join(signs)}, {_tool_note(p)}{also}"
    if p.tools_listed():
        return f"{describe_conversation(p)} with a tools list (no call in the first records){also}"
    return None


def _openthoughts(p: Profile) -> str | None:
    if not (p.has("system", "conversations") and p.role_key() == "from"):
        return None
    if any(m in t for t in p.assistant_texts() for m in THOUGHT_MARKERS):
        return ("keys system + conversations; assistant turns carry <|begin_of_thought|> markers "
                "(OpenThoughts)")
    return None


def _openthoughts_metadata(p: Profile) -> str | None:
    if p.has("problem", "deepseek_reasoning", "deepseek_solution"):
        return "keys problem + deepseek_reasoning + deepseek_solution (OpenThoughts metadata config)"
    return None


def _s1k(p: Profile) -> str | None:
    traces = sorted(k for k in p.keys if "thinking_trajector" in k)  # 1.1: _trajectory, 1.0: _trajectories
    attempts = sorted(k for k in p.keys if k.endswith("attempt"))
    if p.has("question") and traces and attempts:
        return f"keys question + {traces[0]} + {attempts[0]} (s1K reasoning traces)"
    return None


def _reasoning_messages(p: Profile) -> str | None:
    if not p.conv_key or not p.role_key():
        return None
    parts = sorted(p.part_types() & set(REASONING_PART_TYPES))
    if parts:
        return f"{describe_conversation(p)}: assistant content parts of type {', '.join(parts)}"
    keys = sorted({k for t in p.turns for k in REASONING_TURN_KEYS if t.get(k)})
    if keys:
        return f"{describe_conversation(p)}: turns carry {', '.join(keys)}"
    if any(tag in t for t in p.assistant_texts() for tag in THINK_TAGS + THOUGHT_MARKERS):
        return f"{describe_conversation(p)}: assistant turns carry <think> reasoning"
    return None


def _gsm8k(p: Profile) -> str | None:
    if p.has("question", "answer") and all(
        isinstance(a, str) and "####" in a for a in p.values("answer")
    ):
        return "keys question + answer, every answer ending in '#### <number>' (GSM8K)"
    return None


def _numina(p: Profile) -> str | None:
    if p.has("problem", "solution"):
        return "keys problem + solution (NuminaMath-style worked solutions)"
    return None


def _sharegpt(p: Profile) -> str | None:
    if p.conv_key and p.role_key() == "from":
        return f"{describe_conversation(p)} (ShareGPT)"
    if p.conv_key and p.turns and all(("human" in t or "user" in t) for t in p.turns):
        return f"'{p.conv_key}' turns of human/assistant pairs (ms-swift sharegpt)"
    return None


def _messages(p: Profile) -> str | None:
    if p.conv_key and p.role_key() == "role" and all(
        any(k in t for k in CONTENT_KEYS) for t in p.turns
    ):
        typed = " with typed content parts" if p.part_types() else ""
        return f"{describe_conversation(p)}{typed} (OpenAI/TRL messages)"
    return None


def _multiple_choice(p: Profile) -> str | None:
    if p.any_of(("question", "prompt")) and p.has("A", "B", "C", "D"):
        return "keys question + A/B/C/D (multiple-choice, e.g. MMLU)"
    return None


def _alpaca(p: Profile) -> str | None:
    if p.has("instruction", "output"):
        inp = " + input" if p.has("input") else ""
        return f"keys instruction{inp} + output (alpaca)"
    return None


def _prompt_completion(p: Profile) -> str | None:
    if p.has("prompt", "completion"):
        return "keys prompt + completion (TRL prompt-completion)"
    return None


def _query_response(p: Profile) -> str | None:
    query = p.any_of(QUERY_KEYS)
    response = p.any_of(RESPONSE_KEYS)
    if query and response:
        return f"keys {query[0]} + {response[0]} (ms-swift query/response vocabulary)"
    return None


def _text(p: Profile) -> str | None:
    if p.has("text") and not p.any_of(QUERY_KEYS + RESPONSE_KEYS) and all(
        isinstance(v, str) for v in p.values("text")
    ):
        others = sorted(p.keys - {"text"})
        extra = f" (plus metadata: {', '.join(others)})" if others else ""
        return f"key text{extra}: plain text"
    return None


def _prompt_only(p: Profile) -> str | None:
    query = p.any_of(QUERY_KEYS)
    if query and not p.any_of(RESPONSE_KEYS):
        return f"key {query[0]} and no response key (keys seen: {keys_of(p)})"
    return None


RULES: tuple[Rule, ...] = (
    # Preference first: a preference set with images or tools is still preference data.
    Rule("llamafactory_v1_preference", "preference", _v1_preference, "LLaMA-Factory v1"),
    Rule("conversation_preference", "preference", _conversation_preference, "LLaMA-Factory/ms-swift"),
    Rule("trl_preference", "preference", _trl_preference, "TRL"),
    Rule("trl_unpaired_preference", "unpaired_preference", _trl_unpaired, "TRL"),
    Rule("conversation_kto", "unpaired_preference", _conversation_kto, "LLaMA-Factory"),
    Rule("trl_stepwise_supervision", "stepwise_supervision", _stepwise, "TRL"),
    # Media next: the records only make sense with their images, videos or audio.
    Rule("image_caption", "image_caption", _image_caption, "HF imagefolder / blip captions"),
    Rule("video_caption", "video_caption", _video_caption, "WebVid / OpenVid-style clip captions"),
    Rule("explainer_code", "explainer_code", _explainer_code, "Nexus explainer samples"),
    Rule("mllm_video_audio", "video_audio", _video_audio, "LLaMA-Factory/ms-swift"),
    Rule("mllm_video", "video", _media("videos", VIDEO_PART_TYPES, "videos"), "LLaMA-Factory/ms-swift"),
    Rule("mllm_audio", "audio", _media("audios", AUDIO_PART_TYPES, "audios"), "LLaMA-Factory/ms-swift"),
    Rule("mllm_image", "image", _media("images", IMAGE_PART_TYPES, "images"), "LLaMA-Factory/TRL"),
    # Tool use, then reasoning traces, then math, then generic chat and instruction data.
    Rule("xlam", "tool_calls", _xlam, "xLAM dataset card"),
    Rule("sharegpt_tools", "tool_calls", _sharegpt_tools, "LLaMA-Factory"),
    Rule("messages_tools", "tool_calls", _openai_tools, "OpenAI/TRL/LLaMA-Factory v1"),
    Rule("openthoughts", "reasoning_trace", _openthoughts, "OpenThoughts dataset card"),
    Rule("openthoughts_metadata", "reasoning_trace", _openthoughts_metadata, "OpenThoughts dataset card"),
    Rule("s1k", "reasoning_trace", _s1k, "s1K dataset card"),
    Rule("reasoning_messages", "reasoning_trace", _reasoning_messages, "LLaMA-Factory v1/OpenAI"),
    Rule("gsm8k", "math_qa", _gsm8k, "GSM8K"),
    Rule("numina_math", "math_solution", _numina, "NuminaMath dataset card"),
    Rule("sharegpt", "chat", _sharegpt, "LLaMA-Factory/ms-swift"),
    Rule("messages", "chat", _messages, "TRL/OpenAI"),
    Rule("multiple_choice", "multiple_choice", _multiple_choice, "MMLU"),
    Rule("alpaca", "instruction", _alpaca, "LLaMA-Factory/ms-swift"),
    Rule("trl_prompt_completion", "instruction", _prompt_completion, "TRL"),
    Rule("query_response", "instruction", _query_response, "ms-swift"),
    Rule("text", "text", _text, "TRL"),
    Rule("prompt_only", "prompt_only", _prompt_only, "TRL"),
)


def detect_format(records: list[dict[str, Any]]) -> Detection:
    """Detect the schema of a file from its first records.

    Args:
        records: the first records of a file (see :func:`nexus.readers.peek_records`).

    Returns:
        The first matching rule's format and kind with the reason it matched, or a Detection with
        ``format=None`` whose ``why`` names the keys seen and that no known schema uses them.
    """
    if not records:
        return Detection(None, None, "no records to inspect (the file is empty)")
    profile = Profile.of(records)
    for rule in RULES:
        reason = rule.match(profile)
        if reason:
            return Detection(rule.format, rule.kind, reason)
    optional = set().union(*(r.keys() for r in records)) - profile.keys
    tail = f"; in some records only: {key_list(optional)}" if optional else ""
    return Detection(
        None,
        None,
        f"no known schema uses keys {keys_of(profile)}{tail}; rename the fields to a known layout "
        f"(e.g. instruction/output, messages, conversations, prompt/chosen/rejected, text)",
    )
