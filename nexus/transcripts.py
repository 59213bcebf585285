"""Plain-text chat transcripts: ``"\n\nHuman: ...\n\nAssistant: ..."`` (the Anthropic HH-RLHF form).

Preference datasets in this form give ``chosen`` and ``rejected`` as two whole transcripts with the
prompt inside and no ``prompt`` key. :func:`split_transcript_pair` reads both into messages and
splits them where TRL's ``extract_prompt`` does for conversations: the turns both share are the
prompt, and each transcript's last assistant turn is its reply. Standard library only.
"""

from __future__ import annotations

import re
from typing import Any

from nexus.conversations import ConversationError, Message

SPEAKERS = {"Human": "user", "User": "user", "Assistant": "assistant"}
"""Transcript speaker labels -> canonical roles."""
_MARKER = re.compile(r"(?:\A\s*|\n\n)(Human|User|Assistant):[ \t]?")


def is_transcript(value: Any) -> bool:
    """True for a string that starts with a speaker label and has an ``Assistant:`` turn."""
    return isinstance(value, str) and "Assistant:" in value and _MARKER.match(value) is not None


def transcript_messages(text: str) -> list[Message]:
    """The transcript's turns as messages, in order.

    Raises:
        ConversationError: text before the first speaker label, or no turn at all.
    """
    parts = _MARKER.split(text)
    if parts[0].strip():
        raise ConversationError("transcript text before its first 'Human:' / 'Assistant:' label")
    messages = [{"role": SPEAKERS[speaker], "content": body.strip()}
                for speaker, body in zip(parts[1::2], parts[2::2], strict=True)]
    if not messages:
        raise ConversationError("no 'Human:' / 'Assistant:' turn in the transcript")
    return messages


def split_transcript_pair(chosen: str, rejected: str) -> tuple[list[Message], Message, Message]:
    """``(prompt, chosen reply, rejected reply)`` of two transcripts that share every turn before
    their last assistant turn.

    Raises:
        ConversationError: a transcript does not end with a non-empty assistant turn, the two
            differ before it, or the shared prompt has no user turn.
    """
    good, bad = transcript_messages(chosen), transcript_messages(rejected)
    for name, turns in (("chosen", good), ("rejected", bad)):
        if turns[-1]["role"] != "assistant" or not turns[-1]["content"]:
            raise ConversationError(f"the {name} transcript does not end with an 'Assistant:' reply")
    if good[:-1] != bad[:-1]:
        raise ConversationError("the chosen and rejected transcripts differ before their last "
                                "'Assistant:' turn (no common prompt)")
    if not any(turn["role"] == "user" for turn in good[:-1]):
        raise ConversationError("the transcripts' common prompt has no 'Human:' turn")
    return good[:-1], good[-1], bad[-1]
