"""``nexus podcast DOC --out DIR``: a document in, a two-host podcast out.

The trained podcast model (``models/capabilities/podcast``, or any model given with ``--model``) writes
the script from the document's start (:func:`nexus.capabilities.podcast.excerpt`, the prompt it was
trained on); ``--script FILE`` voices a script you wrote or edited instead, without a model. The hosts
speak with two offline voices (:mod:`nexus.speech.voices`, ``--voices``). ``DIR`` gets, all at once
(written to a temporary folder, then renamed):

- ``script.json``: the document excerpt, the model, and the turns, each with its voice and WAV file;
- ``turns/NN_<speaker>.wav``: one WAV per turn;
- ``podcast.wav``: the turns joined, with a short pause between them; ``podcast.mp3`` too when
  ``ffmpeg`` is on PATH.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus.atomic import atomic_dir, write_json_atomic
from nexus.capabilities.podcast import (
    TURN_BOUNDS,
    ScriptError,
    check_script,
    excerpt,
    parse_script,
    podcast_prompt,
    voice_lines,
)

DEFAULT_MODEL = "models/capabilities/podcast"
DEFAULT_VOICES = ("heart", "joe")
DEFAULT_MAX_NEW_TOKENS = 384  # params.yaml's podcast entry sets it too


class PodcastError(ValueError):
    """Bad input to ``nexus podcast``: the message names the file or flag and what to do."""


@dataclass(frozen=True)
class PodcastRequest:
    """What to make: the document, where to write, and how (see :func:`make_podcast`)."""

    document: Path
    out: Path
    model: str = DEFAULT_MODEL
    script: Path | None = None
    voices: tuple[str, ...] = DEFAULT_VOICES
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    min_turns: int = TURN_BOUNDS[0]
    max_turns: int = TURN_BOUNDS[1]


def read_document(path: Path) -> str:
    """The document's text (UTF-8 text or Markdown).

    Raises:
        PodcastError: the file is missing, not UTF-8 text, or holds no words.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise PodcastError(f"{path}: no such document") from error
    except (UnicodeDecodeError, IsADirectoryError) as error:
        raise PodcastError(f"{path}: not a UTF-8 text document (give a .txt or .md file)") from error
    if not re.search(r"\w", text):
        raise PodcastError(f"{path}: the document holds no words")
    return text


def write_script(request: PodcastRequest, document: str) -> tuple[list[dict[str, str]], str]:
    """The script's turns and where they came from: ``--script`` read as it is, else the model's reply
    to the podcast prompt (greedy).

    Raises:
        PodcastError: the script file or the model's reply is not a script within the turn bounds.
    """
    if request.script is not None:
        try:
            data = json.loads(request.script.read_text(encoding="utf-8"))  # a list of turns, or a script.json
            turns = parse_script(json.dumps(data.get("turns") if isinstance(data, dict) else data))
            check_script(turns, request.min_turns, request.max_turns)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ScriptError) as error:
            raise PodcastError(f"--script {request.script}: not a podcast script: {error}") from error
        return turns, str(request.script)
    return _model_script(request, document), request.model


def _model_script(request: PodcastRequest, document: str) -> list[dict[str, str]]:
    from nexus.generation.batch import generate_examples
    from nexus.loading import ModelSourceError, load_model, load_tokenizer, model_source

    try:
        model_source(request.model)
    except ModelSourceError as error:
        raise PodcastError(f"--model {request.model}: not a model; train one with `make train CAPS=podcast` "
                           "(it writes models/capabilities/podcast) or give an HF or adapter folder") from error
    model, tokenizer = load_model(request.model), load_tokenizer(request.model)
    example = {"prompt": [{"role": "user", "content": podcast_prompt(document)}]}
    reply = generate_examples(model.eval(), tokenizer, [example], request.max_new_tokens)[0]
    try:
        turns = parse_script(reply)
        check_script(turns, request.min_turns, request.max_turns)
    except ScriptError as error:
        raise PodcastError(f"--model {request.model}: its reply is not a podcast script ({error}); train it "
                           f"with `make train CAPS=podcast`, or raise --max-new-tokens. Reply: {reply[:200]!r}"
                           ) from error
    return turns


def _file_name(number: int, speaker: str) -> str:
    return f"{number:02d}_{re.sub(r'[^a-z0-9]+', '-', speaker.lower()).strip('-') or 'host'}.wav"


def make_podcast(request: PodcastRequest) -> dict[str, Any]:
    """Write the podcast of ``request.document`` into ``request.out`` (the module docstring lists the
    files) and return the ``script.json`` data.

    Raises:
        PodcastError: bad document, script, model, or voices (each names the file or flag).
    """
    from nexus.speech.audio import write_mp3, write_wav
    from nexus.speech.dialogue import render_dialogue
    from nexus.speech.voices import SpeechError

    if len(request.voices) < 2:
        raise PodcastError(f"--voices {','.join(request.voices)}: give two voices, one per host (e.g. heart,joe)")
    document = excerpt(read_document(request.document))
    turns, source = write_script(request, document)
    lines = voice_lines(turns, list(request.voices))
    try:
        dialogue = render_dialogue(lines)
    except SpeechError as error:
        raise PodcastError(f"--voices: {error}") from error
    joined = dialogue.joined()
    script: dict[str, Any] = {
        "document": str(request.document), "excerpt": document, "script_from": source,
        "voices": {turn["speaker"]: voice for turn, (voice, _) in zip(turns, lines, strict=True)},
        "sample_rate": dialogue.sample_rate, "seconds": round(len(joined) / dialogue.sample_rate, 2), "turns": [],
    }
    with atomic_dir(request.out) as folder:
        (folder / "turns").mkdir()
        for number, (turn, (voice, _), audio) in enumerate(zip(turns, lines, dialogue.turns, strict=True), 1):
            name = f"turns/{_file_name(number, turn['speaker'])}"
            write_wav(folder / name, audio, dialogue.sample_rate)
            script["turns"].append({**turn, "voice": voice, "audio": name,
                                    "seconds": round(len(audio) / dialogue.sample_rate, 2)})
        write_wav(folder / "podcast.wav", joined, dialogue.sample_rate)
        script["mp3"] = write_mp3(folder / "podcast.mp3", joined, dialogue.sample_rate)
        write_json_atomic(script, folder / "script.json")
    return script
