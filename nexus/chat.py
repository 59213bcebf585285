"""Rendering examples through the model's chat template, the same way for training and generation.

Tool schemas go through the template's ``tools`` argument where the template uses it; a template
that ignores tools (SmolLM2's ChatML has no tools block) would drop them silently, so for those the
schemas are written into a system message instead (a JSON list, as most tool-calling templates do),
and tool results (``tool`` messages, which such a template would show under a role the model never
saw) become user messages starting with :data:`TOOL_RESULT_PREFIX`.
"""

from __future__ import annotations

import json
from typing import Any

TOOLS_SYSTEM_PROMPT = (
    "You can call these functions. To call functions, answer with a JSON list of calls, "
    '[{"name": <function name>, "arguments": {<argument>: <value>}}], and nothing else.\n'
    "Functions:\n"
)
TOOL_RESULT_PREFIX = "Tool result: "


def template_supports_tools(tokenizer: Any) -> bool:
    """True when the tokenizer's chat template reads a ``tools`` variable."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "tools" in template


def prepare(example: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The example as the template will see it: ``tools`` kept, or folded into a system message.

    Without template tools support, ``tool`` messages also become ``Tool result:`` user messages.
    """
    tools = example.get("tools")
    if not tools:
        return {k: v for k, v in example.items() if k != "tools"}
    if template_supports_tools(tokenizer):
        return example
    system = TOOLS_SYSTEM_PROMPT + json.dumps(tools, ensure_ascii=False)
    prompt = [{"role": "user", "content": TOOL_RESULT_PREFIX + m["content"]} if m["role"] == "tool" else m
              for m in example["prompt"]]
    if prompt and prompt[0]["role"] == "system":
        prompt[0] = {"role": "system", "content": f"{prompt[0]['content']}\n\n{system}"}
    else:
        prompt.insert(0, {"role": "system", "content": system})
    return {**{k: v for k, v in example.items() if k != "tools"}, "prompt": prompt}


def render_prompt(example: dict[str, Any], tokenizer: Any) -> str:
    """The generation prompt text of an example (ends with the assistant header)."""
    ready = prepare(example, tokenizer)
    kwargs = {"tools": ready["tools"]} if ready.get("tools") else {}
    return tokenizer.apply_chat_template(ready["prompt"], tokenize=False, add_generation_prompt=True, **kwargs)


def token_ids(example: dict[str, Any], tokenizer: Any, with_completion: bool = True) -> list[int]:
    """Token ids of the example's rendering: prompt + completion, or the generation prompt alone."""
    ready = prepare(example, tokenizer)
    kwargs = {"tools": ready["tools"]} if ready.get("tools") else {}
    messages = ready["prompt"] + ready["completion"] if with_completion else ready["prompt"]
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=not with_completion,
                                         return_dict=True, **kwargs)["input_ids"]
