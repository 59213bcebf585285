"""NexusOmniProcessor: text with ``<image>`` / ``<audio>`` / ``<video>`` placeholders, and the media, to tensors.

A small class rather than transformers' ``ProcessorMixin``: that mixin writes every non-tokenizer part into
one ``processor_config.json`` keyed by its attribute name and reloads them through AutoProcessor's class
lookup, which has no slot for a Nexus-specific class without registering a custom processor; this class
needs none of it. Its folder (also the omni model's folder) holds:

- the tokenizer files (the placeholders are added special tokens),
- ``preprocessor_config.json``: the vision encoder's image processor, resized to ``image_size`` (absent
  without a vision tower),
- ``omni_processor.json``: the token counts, ``audio_seconds``, ``video_frames`` and the Whisper feature
  extractor's settings (``chunk_length = audio_seconds``).

Each placeholder expands into a fixed number of tokens (see :mod:`nexus.multimodal.omni_model`): every
image is resized to ``image_size``, every clip padded or cut to ``audio_seconds``, every video sampled to
``video_frames`` frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGE_TOKEN, AUDIO_TOKEN, VIDEO_TOKEN = "<image>", "<audio>", "<video>"
PLACEHOLDERS = (IMAGE_TOKEN, AUDIO_TOKEN, VIDEO_TOKEN)
CONFIG_NAME = "omni_processor.json"


def _flat(items: Any) -> list[Any]:
    """Images or audios given flat (every text's items in order) or one list per text, as one flat list."""
    out: list[Any] = []
    for item in items or []:
        out.extend(item if isinstance(item, (list, tuple)) else [item])
    return out


def _flat_videos(videos: Any) -> list[Any]:
    """Videos (each a list of frames) given flat or one list of videos per text, as one flat list."""
    videos = list(videos or [])
    per_text = any(isinstance(v, (list, tuple)) and (not v or isinstance(v[0], (list, tuple))) for v in videos)
    return [clip for per in videos for clip in per] if per_text else videos


def sample_frames(frames: Sequence[Any], count: int) -> list[Any]:
    """``count`` evenly spaced frames of a clip (frames repeat when the clip has fewer)."""
    if not frames:
        raise ValueError("a video with no frames")
    if count == 1:
        return [frames[len(frames) // 2]]
    return [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]


class NexusOmniProcessor:
    """Tokenizer + image processor + Whisper feature extractor of a NexusOmni model."""

    def __init__(self, tokenizer: Any, image_processor: Any = None, feature_extractor: Any = None, *,
                 image_size: int = 0, image_tokens: int = 0, video_frames: int = 4, video_frame_tokens: int = 0,
                 audio_seconds: int = 0, audio_tokens: int = 0) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor
        self.image_size, self.image_tokens = image_size, image_tokens
        self.video_frames, self.video_frame_tokens = video_frames, video_frame_tokens
        self.audio_seconds, self.audio_tokens = audio_seconds, audio_tokens
        missing = [t for t in PLACEHOLDERS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"the tokenizer lacks the placeholder tokens {missing}: add them as special tokens "
                             f"(nexus.multimodal.compose.build_omni does)")

    # -- token ids and counts ------------------------------------------------------------------
    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    @property
    def audio_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)

    @property
    def media_token_ids(self) -> set[int]:
        """The ids of the three placeholders (never trained on, never decoded)."""
        return {self.image_token_id, self.audio_token_id, self.video_token_id}

    @property
    def video_tokens(self) -> int:
        """Tokens one video costs: ``video_frames`` x ``video_frame_tokens``."""
        return self.video_frames * self.video_frame_tokens

    def expand(self, text: str) -> str:
        """``text`` with each placeholder repeated as many times as its media item has tokens."""
        for token, count, part in ((IMAGE_TOKEN, self.image_tokens, "vision"), (VIDEO_TOKEN, self.video_tokens,
                                   "vision"), (AUDIO_TOKEN, self.audio_tokens, "audio")):
            if token in text:
                if not count:
                    raise ValueError(f"the text has {token} but this omni model has no {part} tower: "
                                     f"build it with a {part} encoder or drop the {token} items")
                text = text.replace(token, token * count)
        return text

    # -- media -------------------------------------------------------------------------------------
    def image_tensor(self, images: Sequence[Any]) -> Any:
        """``pixel_values`` ``(n, 3, image_size, image_size)`` of PIL images."""
        rgb = [im.convert("RGB") if hasattr(im, "convert") else im for im in images]
        return self.image_processor(rgb, return_tensors="pt")["pixel_values"]

    def audio_tensor(self, audios: Sequence[Any]) -> Any:
        """``input_features`` ``(n, mels, 100 * audio_seconds)`` of float32 mono arrays at the extractor's rate."""
        import numpy

        arrays = [numpy.asarray(a, dtype=numpy.float32) for a in audios]
        return self.feature_extractor(arrays, sampling_rate=self.feature_extractor.sampling_rate,
                                      return_tensors="pt")["input_features"]

    def media_tensors(self, images: Sequence[Any] = (), audios: Sequence[Any] = (),
                      videos: Sequence[Sequence[Any]] = ()) -> dict[str, Any]:
        """``pixel_values`` / ``pixel_values_videos`` (all clips' frames, ``video_frames`` each) /
        ``input_features`` for the media given; keys absent for kinds with no item."""
        out: dict[str, Any] = {}
        if images:
            out["pixel_values"] = self.image_tensor(images)
        if videos:
            out["pixel_values_videos"] = self.image_tensor(
                [f for clip in videos for f in sample_frames(clip, self.video_frames)])
        if audios:
            out["input_features"] = self.audio_tensor(audios)
        return out

    def __call__(self, text: str | list[str], images: Sequence[Any] | None = None,
                 audios: Sequence[Any] | None = None, videos: Sequence[Sequence[Any]] | None = None,
                 padding: bool = True, return_tensors: str | None = "pt") -> dict[str, Any]:
        """Token ids of the expanded texts (padded on the tokenizer's ``padding_side``) and the media tensors.

        ``images`` / ``audios`` are flat (every text's items in placeholder order) or one list per text;
        ``videos`` are lists of frames (PIL images), flat or one list per text.
        """
        texts = [text] if isinstance(text, str) else list(text)
        images_, audios_ = _flat(images), _flat(audios)
        videos_ = _flat_videos(videos)
        for token, items, what in ((IMAGE_TOKEN, images_, "images"), (AUDIO_TOKEN, audios_, "audios"),
                                   (VIDEO_TOKEN, videos_, "videos")):
            count = sum(t.count(token) for t in texts)
            if count != len(items):
                raise ValueError(f"the texts have {count} {token} placeholder(s) but {len(items)} {what} were given")
        batch = self.tokenizer([self.expand(t) for t in texts], add_special_tokens=False, padding=padding,
                               return_tensors=return_tensors)
        return {**batch, **self.media_tensors(images_, audios_, videos_)}

    # -- decoding ----------------------------------------------------------------------------------
    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # -- persistence -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "image_tokens": self.image_tokens,
                "video_frames": self.video_frames, "video_frame_tokens": self.video_frame_tokens,
                "audio_seconds": self.audio_seconds, "audio_tokens": self.audio_tokens}

    def save_pretrained(self, out_dir: str | Path) -> None:
        """Write the tokenizer, the image processor and ``omni_processor.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(out)
        fe = None
        if self.feature_extractor is not None:
            fe = {k: v for k, v in self.feature_extractor.to_dict().items() if k not in ("n_samples", "nb_max_frames")}
        (out / CONFIG_NAME).write_text(json.dumps({**self.settings(), "feature_extractor": fe}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> NexusOmniProcessor:
        """The processor saved by :meth:`save_pretrained` in ``path``."""
        from transformers import AutoImageProcessor, WhisperFeatureExtractor

        from nexus.loading import load_tokenizer

        folder = Path(path)
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file}: missing; {folder} is not a NexusOmni folder "
                                    f"(make one with nexus.multimodal.compose.build_omni + save_omni)")
        settings = json.loads(config_file.read_text())
        fe_dict = settings.pop("feature_extractor", None)
        image_processor = (AutoImageProcessor.from_pretrained(folder)
                           if (folder / "preprocessor_config.json").is_file() else None)
        feature_extractor = WhisperFeatureExtractor(**fe_dict) if fe_dict else None
        return cls(load_tokenizer(folder), image_processor, feature_extractor, **settings)
