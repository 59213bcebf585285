"""podcast: a document in, a two-host podcast script out, then voiced by two offline voices.

The model writes the script as JSON: a list of turns, each ``{"speaker": <name>, "text": <line>}``,
the two hosts alternating (:data:`HOSTS`). ``nexus podcast DOC`` (:mod:`nexus.podcast`) renders it:
the first host speaks with the first of ``voices``, the second with the second.

Accepted formats (detected by the organizer, see :mod:`nexus.formats`), the reply being the script:

- ``messages`` / ``sharegpt``: the user turn asks for the podcast and holds the document (the prompt of
  :func:`podcast_prompt`; a user turn of another wording works too, its text is the document).

(No alpaca formatter: instruction sets without scripts would reach podcast only to be dropped.)

A reply that is not a well-formed script (see :func:`check_script`) is dropped with the reason.

Scoring on held-out documents:

- ``format_ok`` (headline): the reply parses as a script, two speakers alternate, and the turn count is
  within ``min_turns``..``max_turns``; ``parses`` and ``alternates`` alone, and ``turns`` (the count).
- ``coverage``: the share of the document's key terms (:func:`key_terms`) the script's lines use.
- ``rendered`` and ``wer`` (lower is better): on the first ``round_trip`` documents, ``rendered`` is the
  share of replies with a script to voice; each script is voiced
  (:func:`nexus.speech.dialogue.render_dialogue`) and read back by the Whisper model of ``audio_encoder``,
  and ``wer`` is the word error rate of that transcript against the script's lines, averaged over the
  voiced scripts (absent when none could be voiced).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._records import formatter
from nexus.conversations import chat_messages, split_conversation

METRIC = "format_ok"
HOSTS = ("Alex", "Sam")
DOCUMENT_MARK = "Document:\n"
KEY_TERMS = 8
EXCERPT_WORDS = 60  # a document is read up to the end of the sentence that passes this many words
TURN_BOUNDS = (4, 12)  # the default min_turns / max_turns (params.yaml sets them per run)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
# Common English words that say nothing about a document's subject (kept out of its key terms).
_STOPWORD_TEXT = """
about above after again against also among another because been before being below between both could does
doing down during each even every from further had has have having here hers herself himself into itself
just like made make many more most much must need only other ought ours over same should some such than
that their theirs them themselves then there these they this those through under until upon very well were
what when where which while whom whose with within without would your yours yourself also used uses using
usually often will shall can may might its it's first second one two three four five said says know known
called since however although though people thing things time times year years want good great really
something anything everything
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class ScriptError(ValueError):
    """A reply that is not a podcast script; the message says what is wrong with it."""


def excerpt(document: str, words: int = EXCERPT_WORDS) -> str:
    """The start of ``document`` the model reads: whole sentences (:func:`nexus.speech.audio.split_sentences`,
    after splitting run-on sentences such as ``state.Alabama``, dropping empty brackets and turning
    straight double quotes into curly ones, so a script quoting the document needs no JSON escapes), up
    to the one that passes ``words`` words; the whole text when it is shorter.

    Raises:
        ValueError: the document holds no words.
    """
    from nexus.speech.audio import split_sentences

    text = re.sub(r"\(\s*[;,]?\s*\)", "", document)
    text = re.sub(r"(?<=[a-z0-9][.!?])(?=[A-Z][a-z])", " ", text)
    text = re.sub(r'"(?=\w)', "\u201c", text).replace('"', "\u201d")  # curly quotes: no escapes in the JSON script
    kept: list[str] = []
    for sentence in split_sentences(text):
        kept.append(" ".join(sentence.split()))
        if sum(len(s.split()) for s in kept) >= words:
            break
    if not kept:
        raise ValueError("the document holds no words")
    return " ".join(kept)


def podcast_prompt(document: str, hosts: tuple[str, str] = HOSTS) -> str:
    """The request the model is trained on and asked at ``nexus podcast``: the hosts, the JSON shape,
    then the document after :data:`DOCUMENT_MARK`."""
    return (f"Write a podcast script in which two hosts, {hosts[0]} and {hosts[1]}, talk about the document "
            f"below, taking turns. Reply with JSON only: a list of turns, each "
            f'{{"speaker": name, "text": what they say}}.\n\n{DOCUMENT_MARK}{document.strip()}')


def document_of(prompt_text: str) -> str:
    """The document inside a podcast request (the whole text when it has no :data:`DOCUMENT_MARK`)."""
    return prompt_text.split(DOCUMENT_MARK, 1)[1] if DOCUMENT_MARK in prompt_text else prompt_text


def _json_turns(reply: str) -> Any:
    text = reply.strip()
    if text.startswith("```"):  # a fenced block: ```json ... ```
        text = text.strip("`").removeprefix("json").strip()
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise ScriptError("no JSON list of turns in the reply")
    try:
        return json.loads(text[start:end + 1])
    except json.JSONDecodeError as error:
        raise ScriptError(f"the turns are not valid JSON ({error.msg} at character {error.pos})") from error


def parse_script(reply: str) -> list[dict[str, str]]:
    """The turns of a reply: ``[{"speaker", "text"}, ...]`` with both fields non-empty strings.

    Raises:
        ScriptError: no JSON list, invalid JSON, or a turn without a speaker or text (named by index).
    """
    turns = _json_turns(reply)
    if not isinstance(turns, list) or not turns:
        raise ScriptError("the script is not a non-empty list of turns")
    parsed = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ScriptError(f"turn {index} is not an object")
        speaker, text = turn.get("speaker"), turn.get("text")
        if not isinstance(speaker, str) or not speaker.strip() or not isinstance(text, str) or not text.strip():
            raise ScriptError(f"turn {index} needs a non-empty 'speaker' and 'text'")
        parsed.append({"speaker": speaker.strip(), "text": text.strip()})
    return parsed


def alternates(turns: list[dict[str, str]]) -> bool:
    """Exactly two speakers, never the same one twice in a row."""
    speakers = [t["speaker"] for t in turns]
    return len(set(speakers)) == 2 and all(a != b for a, b in zip(speakers, speakers[1:], strict=False))


def check_script(turns: list[dict[str, str]], min_turns: int, max_turns: int) -> None:
    """Raise :class:`ScriptError` unless two speakers alternate and the turn count is within bounds."""
    if not alternates(turns):
        raise ScriptError(f"the speakers do not alternate between two hosts: {[t['speaker'] for t in turns]}")
    if not min_turns <= len(turns) <= max_turns:
        raise ScriptError(f"{len(turns)} turns, outside {min_turns}..{max_turns}")


def key_terms(document: str, count: int = KEY_TERMS) -> list[str]:
    """The document's most frequent content words (lowercase, at least four letters, no common
    words), ties broken by first appearance: what a script about it should mention."""
    words = [w.lower().strip("'-") for w in _WORD.findall(document)]
    counts = Counter(w for w in words if len(w) >= 4 and w not in _STOPWORDS)
    order = {w: i for i, w in reversed(list(enumerate(words)))}
    return sorted(counts, key=lambda w: (-counts[w], order[w]))[:count]


def coverage(turns_text: str, terms: list[str]) -> float:
    """The share of ``terms`` that appear as words in ``turns_text`` (1.0 when there are none)."""
    said = {w.lower().strip("'-") for w in _WORD.findall(turns_text)}
    return sum(t in said for t in terms) / len(terms) if terms else 1.0


def script_text(turns: list[dict[str, str]]) -> str:
    """The lines of a script, in order, joined by spaces (what a listener hears)."""
    return " ".join(t["text"] for t in turns)


def _example(messages: list[dict[str, str]]) -> Example:
    prompt, reply = split_conversation(messages)
    try:
        turns = parse_script(reply)
        check_script(turns, 2, 10**6)
    except ScriptError as error:
        raise SkipRecord(f"the reply is not a podcast script: {error}") from error
    document = document_of(prompt[-1]["content"])
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": reply}], "reference": reply,
            "key_terms": key_terms(document)}  # type: ignore[typeddict-unknown-key]


@formatter
def format_chat(record: dict[str, Any]) -> Example:
    """A chat whose last assistant turn is a script -> a podcast example."""
    return _example(chat_messages(record))


FORMATTERS = {"messages": format_chat, "sharegpt": format_chat}


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, voices: list[str],
             round_trip: int, audio_encoder: str | None) -> list[str]:
    """Write each held-out document's script (the shared batched greedy generation), then voice the
    first ``round_trip`` and read them back with Whisper (``audio_encoder``): those replies carry
    ``metrics`` ``{"wer", "rendered", "audio_s"}`` (:class:`nexus.generation.stream.StreamedText`)."""
    from nexus.generation.batch import generate_examples
    from nexus.generation.stream import StreamedText

    replies = generate_examples(model, tokenizer, examples, max_new_tokens)
    if round_trip <= 0 or not replies:
        return replies
    if not audio_encoder:
        raise ValueError("podcast: round_trip > 0 needs audio_encoder (a Whisper folder, e.g. "
                         "models/encoders/audio_in/whisper-tiny.en); set it in params.yaml or set round_trip: 0")
    from nexus.speech.transcribe import Transcriber

    transcriber = Transcriber(audio_encoder)
    return [StreamedText(reply, round_trip_metrics(reply, voices, transcriber)) if i < round_trip else reply
            for i, reply in enumerate(replies)]


def voice_lines(turns: list[dict[str, str]], voices: list[str]) -> list[tuple[str, str]]:
    """``(voice, text)`` per turn: the first speaker to talk gets ``voices[0]``, the next ``voices[1]``."""
    cast: dict[str, str] = {}
    for turn in turns:
        cast.setdefault(turn["speaker"], voices[len(cast) % len(voices)])
    return [(cast[t["speaker"]], t["text"]) for t in turns]


def round_trip_metrics(reply: str, voices: list[str], transcriber: Any) -> dict[str, float]:
    """Voice ``reply``'s script and transcribe it: ``wer`` against its lines, ``rendered`` 1.0, and the
    audio's length ``audio_s``; a reply without a script scores only ``rendered`` 0.0 (the word error
    rate is of voiced scripts; format_ok already counts the ones that are not)."""
    from nexus.speech.dialogue import render_dialogue
    from nexus.speech.transcribe import word_error_rate

    try:
        turns = parse_script(reply)
    except ScriptError:
        return {"rendered": 0.0}
    dialogue = render_dialogue(voice_lines(turns, voices))
    joined = dialogue.joined()
    heard = transcriber.transcribe(joined, dialogue.sample_rate)
    return {"wer": min(1.0, word_error_rate(script_text(turns), heard)), "rendered": 1.0,
            "audio_s": round(len(joined) / dialogue.sample_rate, 2)}


def score(generated: str, example: Example, min_turns: int = TURN_BOUNDS[0],
          max_turns: int = TURN_BOUNDS[1]) -> dict[str, float]:
    """``format_ok``, ``parses``, ``alternates``, ``turns``, ``coverage``, and the round trip's ``wer``
    and ``rendered`` where it ran (see the module docstring)."""
    terms = list(example.get("key_terms") or key_terms(document_of(example["prompt"][-1]["content"])))
    try:
        turns = parse_script(generated)
    except ScriptError:
        scores = {"format_ok": 0.0, "parses": 0.0, "alternates": 0.0, "turns": 0.0, "coverage": 0.0}
    else:
        ok = alternates(turns) and min_turns <= len(turns) <= max_turns
        scores = {"format_ok": float(ok), "parses": 1.0, "alternates": float(alternates(turns)),
                  "turns": float(len(turns)), "coverage": coverage(script_text(turns), terms)}
    for key in ("wer", "rendered"):
        value = (getattr(generated, "metrics", None) or {}).get(key)
        if isinstance(value, (int, float)):
            scores[key] = float(value)
    return scores
