"""Reading speech back: Whisper transcription and the word error rate of a round trip.

:class:`Transcriber` loads the Whisper folder the ``encoders`` stage writes
(``models/encoders/audio_in/whisper-tiny.en``: ``WhisperForConditionalGeneration`` + ``WhisperProcessor``);
torch and transformers are imported only when one is made.

:func:`word_error_rate` compares texts after :func:`normalize_text`: lowercase, numbers written as words
(Whisper writes "3" where a script says "three", or the other way round), punctuation dropped,
whitespace collapsed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np

from nexus.speech.audio import resample

WHISPER_RATE = 16000
WINDOW_S = 30.0  # Whisper's input window
_SEARCH_S = 5.0  # a long clip is cut at its quietest 20 ms in the last seconds of each window


class Transcriber:
    """Whisper speech-to-text from a Hugging Face folder.

    Args:
        whisper_dir: the folder (``config.json``, weights, processor files), e.g.
            ``models/encoders/audio_in/whisper-tiny.en`` (written by ``nexus encoders`` / the dvc stage
            ``encoders``).
        device: torch device name.

    Raises:
        FileNotFoundError: the folder or its ``config.json`` is missing (the message says how to make it).
    """

    def __init__(self, whisper_dir: str | Path, device: str = "cpu") -> None:
        folder = Path(whisper_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no Whisper model here (config.json missing); run `nexus encoders` "
                                    "(dvc stage encoders) to convert the offline Whisper, or pass another folder")
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.folder = folder
        self.torch = torch
        self.processor = WhisperProcessor.from_pretrained(folder)
        self.model = WhisperForConditionalGeneration.from_pretrained(folder).to(device).eval()
        self.device = device

    def windows(self, audio: np.ndarray) -> list[np.ndarray]:
        """16 kHz ``audio`` in pieces of at most 30 s, each longer clip cut at its quietest 20 ms
        in the last 5 s of the window (between words, not through one)."""
        size, search, frame = int(WINDOW_S * WHISPER_RATE), int(_SEARCH_S * WHISPER_RATE), WHISPER_RATE // 50
        pieces, start = [], 0
        while len(audio) - start > size:
            zone = audio[start + size - search:start + size]
            energy = np.square(zone[: len(zone) // frame * frame]).reshape(-1, frame).mean(axis=1)
            cut = start + size - search + int(np.argmin(energy)) * frame + frame // 2
            pieces.append(audio[start:cut])
            start = cut
        pieces.append(audio[start:])
        return [p for p in pieces if len(p)]

    def transcribe(self, samples: np.ndarray, sample_rate: int, max_new_tokens: int = 440) -> str:
        """The text spoken in ``samples`` (float mono at ``sample_rate``; resampled to 16 kHz, long audio
        read in 30 s windows and the pieces joined with spaces). Empty audio gives ``""``."""
        audio = resample(np.asarray(samples, dtype=np.float32), int(sample_rate), WHISPER_RATE)
        pieces = self.windows(audio)
        if not pieces:
            return ""
        features = self.processor.feature_extractor(pieces, sampling_rate=WHISPER_RATE, return_tensors="pt",
                                                    return_attention_mask=True)
        settings = copy.deepcopy(self.model.generation_config)
        # the decoder holds max_target_positions tokens, the prompt (start, task, no-timestamps) included
        settings.max_length = min(int(getattr(self.model.config, "max_target_positions", 448)), 4 + max_new_tokens)
        settings.max_new_tokens = None
        with self.torch.inference_mode():
            ids = self.model.generate(features.input_features.to(self.device), generation_config=settings,
                                      attention_mask=features.attention_mask.to(self.device))
        texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return " ".join(t.strip() for t in texts if t.strip())


# ---------------------------------------------------------------- word error rate

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """A non-negative integer in words, without "and": 1250 -> "one thousand two hundred fifty"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    for size, word in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return number_words(head) + f" {word}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)  # unreachable


def _ordinal(words: str) -> str:
    *head, last = words.split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _number(match: re.Match[str]) -> str:
    whole, fraction, suffix = match.group(1).replace(",", ""), match.group(2), (match.group(3) or "").lower()
    if len(whole) > 12:
        return " ".join(_ONES[int(d)] for d in whole)
    words = number_words(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    elif suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(words)
    return f" {words} "


_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\w])", re.IGNORECASE)
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}


def normalize_text(text: str) -> str:
    """The form texts are compared in: lowercase; ``%``, ``&``, ``+``, ``@`` as words; numbers written as
    words (digits -> words, one way: ``1,250`` -> "one thousand two hundred fifty", ``3.5`` -> "three point
    five", ``3rd`` -> "third"; a year reads as a plain number); hyphens and dashes as spaces; apostrophes
    dropped inside words ("don't" -> "dont"); every other punctuation mark dropped; whitespace collapsed."""
    out = text.lower().replace("’", "'").replace("‘", "'")
    out = re.sub(r"\$(?=\d)", " dollars ", out)  # "$9" -> "dollars nine": the order differs from speech; rare
    for symbol, word in _SYMBOLS.items():
        out = out.replace(symbol, word)
    out = _NUMBER.sub(_number, out)
    out = re.sub(r"(?<=\w)'(?=\w)", "", out)
    out = re.sub(r"[^\w\s]|_", " ", out)
    return " ".join(out.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (jiwer), both through :func:`normalize_text`.

    (substitutions + deletions + insertions) / reference words; 0.0 is a perfect read-back and it can
    exceed 1.0. A reference with no words gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))
