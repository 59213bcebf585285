"""What format detection looks at: the keys and conversation turns of a file's first records.

:class:`Profile` is built once per file head (:func:`nexus.formats.detect_format`); the detection
rules ask it questions (which keys every record has, which roles and content-part types the turns
use, what the assistant said). Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nexus.conversations import ASSISTANT_ROLES, CONTENT_KEYS, CONVERSATION_KEYS, ROLE_KEYS, json_value


@dataclass
class Profile:
    """What the rules look at: the keys and conversation turns of the first records."""

    records: list[dict[str, Any]]
    keys: frozenset[str]  # keys present in every record
    conv_key: str | None  # the conversation key every record carries, if any
    turns: list[dict[str, Any]]  # every turn of every record's conversation

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> Profile:
        keys = frozenset.intersection(*(frozenset(r) for r in records)) if records else frozenset()
        conv_key = next((k for k in CONVERSATION_KEYS if k in keys), None)
        turns: list[dict[str, Any]] = []
        if conv_key:
            for record in records:
                conv = json_value(record.get(conv_key))
                if isinstance(conv, list):
                    turns.extend(t for t in conv if isinstance(t, dict))
        return cls(records, keys, conv_key, turns)

    def has(self, *keys: str) -> bool:
        return all(k in self.keys for k in keys)

    def any_of(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k in self.keys]

    def values(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.records]

    def role_key(self) -> str | None:
        return next((k for k in ROLE_KEYS if self.turns and all(k in t for t in self.turns)), None)

    def roles(self) -> set[str]:
        rk = self.role_key()
        return {str(t.get(rk)) for t in self.turns} if rk else set()

    def parts(self) -> list[dict[str, Any]]:
        """Typed content parts (``{"type": ...}``) of every turn."""
        out: list[dict[str, Any]] = []
        for turn in self.turns:
            for key in CONTENT_KEYS:
                content = turn.get(key)
                if isinstance(content, list):
                    out.extend(p for p in content if isinstance(p, dict) and "type" in p)
        return out

    def part_types(self) -> set[str]:
        return {str(p["type"]) for p in self.parts()}

    def assistant_texts(self) -> list[str]:
        rk = self.role_key()
        texts: list[str] = []
        for turn in self.turns:
            if rk and str(turn.get(rk)) not in ASSISTANT_ROLES:
                continue
            for key in CONTENT_KEYS:
                content = turn.get(key)
                if isinstance(content, str):
                    texts.append(content)
                elif isinstance(content, list):
                    texts.extend(str(p.get("text") or p.get("value") or "") for p in content
                                 if isinstance(p, dict))
        return texts

    def tools_listed(self) -> int:
        """How many records carry a non-empty ``tools`` list (possibly JSON-encoded)."""
        if "tools" not in self.keys:
            return 0
        return sum(1 for v in self.values("tools") if json_value(v))


def key_list(keys: Iterable[str], limit: int = 12) -> str:
    """Keys for a message: sorted, each shortened, at most ``limit`` of them."""
    ordered = sorted(keys)
    shown = [k if len(k) <= 32 else k[:29] + "..." for k in ordered[:limit]]
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return (", ".join(shown) + more) or "(none)"


def keys_of(profile: Profile) -> str:
    """The keys every record of the profile has, for a message."""
    return key_list(profile.keys)


def describe_conversation(profile: Profile) -> str:
    """The conversation key, role key and roles seen, for a message."""
    rk = profile.role_key()
    roles = ", ".join(sorted(profile.roles())) or "none"
    return f"'{profile.conv_key}' turns keyed by '{rk}' (roles: {roles})"
