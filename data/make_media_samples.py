"""Build the multimodal samples in data/samples/ (omni, vision_qa, video_understanding, tri_streaming,
image_generation, video_generation).

They are made from ../shared/datasets. Deterministic: the same inputs give byte-identical outputs
(fixed row selection, a seeded RNG for the clips, single-threaded H.264 encoding). Each folder's
SOURCE.md says what is real and what the project made. Run from the repository root with the
project's venv (numpy, Pillow, PyAV)::

    .venv/bin/python data/make_media_samples.py            # rewrite the six folders' data
    .venv/bin/python data/make_media_samples.py --check    # rebuild in a temp dir and compare

Only the data this script writes is replaced (the record files, ``digits/``, ``fsdd/``, ``clips/``,
``llamafactory/``); SOURCE.md is written by hand and left alone. The script sits outside
data/samples so that the organizer, which scans that folder, does not list it.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import gzip
import json
import random
import re
import shutil
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SAMPLES = ROOT / "data" / "samples"

PER_CLASS = 60          # digit images per class for omni, and again (the next rows) for vision_qa
FSDD_TAKES = range(5)   # takes 0..4 of every speaker and digit: 6 x 10 x 5 = 300 recordings
CLIPS = 200             # project-made clips of three digits each
CLIP_DIGITS = 3
FRAMES_PER_DIGIT = 2
CLIP_SIZE = 56          # each 8x8 digit upscaled 7x (nearest) to 56x56
CLIP_FPS = 2
SEED = 11

CAPTION_PROMPT = "<image>Which digit is shown?"
QUESTION_PROMPT = "<image>What number is written in this image? Answer with one digit."
SPOKEN_PROMPT = "<audio>Which digit is spoken?"
VIDEO_PROMPT = "<video>Which digits appear, in order? Answer with the digits separated by spaces."
TRI_PER_CLASS = 10      # tri_streaming: vision_qa's first 10 digits of each class, seen and paired with speech
TRI_TAKES = range(5, 8)  # tri_streaming: FSDD takes 5..7, which omni never saw: 6 x 10 x 3 = 180 recordings
TRI_TEXT = 60           # tri_streaming: short real alpaca chats (text in, text and speech out)
TRI_IMAGE_PROMPT = "<image>What number is written here? Answer in one short sentence."
TRI_AUDIO_PROMPT = "<audio>What digit do you hear? Answer in one short sentence."
TRI_BOTH_PROMPT = "<image><audio>Is the written digit the same as the spoken one? Answer yes or no, then name both."
# Generated paths under each folder (replaced on a rebuild; everything else is kept).
OWNED = {
    "omni": ("digits_captions.json", "spoken_digits.json", "digits", "fsdd", "llamafactory"),
    "vision_qa": ("digits_questions.json", "digits"),
    "video_understanding": ("digit_sequences.json", "clips", "llamafactory"),
    "tri_streaming": ("conversations.json", "text_chats.json", "digits", "fsdd"),
    "image_generation": ("captions.jsonl", "dog"),
    "video_generation": ("captions.jsonl", "clips"),
}
VIDEO_CAPTIONED = 40  # video_understanding's first clips, captioned for text-to-video
VIDEO_HELD_OUT = 8  # the last of them held out (split: test)
INSTANCE_PROMPT = "a photo of sks dog"  # DreamBooth's instance prompt: unique token + class
LIVE_SUBJECT_PROMPT = re.compile(r"'(a [^']*\{0\} \{1\}[^']*)'\.format")


def digit_rows(shared: Path) -> list[tuple[list[int], int]]:
    """``digits.csv.gz`` as (64 pixel values 0..16, label) per row, in file order."""
    with gzip.open(shared / "digits" / "digits.csv.gz", "rt", encoding="utf-8") as f:
        return [([int(float(v)) for v in row[:64]], int(float(row[64]))) for row in csv.reader(f) if row]


def digit_image(pixels: list[int]):  # -> PIL.Image.Image
    """An 8x8 grayscale image, ink bright: values 0..16 scaled to 0..255."""
    from PIL import Image

    image = Image.new("L", (8, 8))
    image.putdata([round(v * 255 / 16) for v in pixels])
    return image


def split_rows(rows: list[tuple[list[int], int]]) -> tuple[list[int], list[int], dict[int, list[int]]]:
    """Row numbers for omni (the first PER_CLASS of each class), vision_qa (the next PER_CLASS) and
    the clips (the rest, per class), in file order."""
    omni, vqa, rest = [], [], {d: [] for d in range(10)}
    seen = {d: 0 for d in range(10)}
    for number, (_, label) in enumerate(rows):
        (omni if seen[label] < PER_CLASS else vqa if seen[label] < 2 * PER_CLASS else rest[label]).append(number)
        seen[label] += 1
    return omni, vqa, rest


def write_records(path: Path, records: list[dict]) -> None:
    """A JSON list, one record per line."""
    path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n",
                    encoding="utf-8")


def image_records(out: Path, rows: list, numbers: list[int], prompt: str) -> list[dict]:
    (out / "digits").mkdir(parents=True)
    records = []
    for number in numbers:
        pixels, label = rows[number]
        name = f"digits/d{number:04d}.png"
        digit_image(pixels).save(out / name, optimize=True)
        records.append({"messages": [{"role": "user", "content": prompt},
                                     {"role": "assistant", "content": str(label)}], "images": [name]})
    return records


def spoken_records(out: Path, shared: Path) -> list[dict]:
    (out / "fsdd").mkdir(parents=True)
    records = []
    for wav in sorted((shared / "fsdd" / "recordings").glob("*.wav"),
                      key=lambda p: (p.stem.split("_")[1], int(p.stem.split("_")[0]), int(p.stem.split("_")[2]))):
        digit, speaker, take = wav.stem.split("_")
        if int(take) not in FSDD_TAKES:
            continue
        shutil.copyfile(wav, out / "fsdd" / wav.name)
        records.append({"messages": [{"role": "user", "content": SPOKEN_PROMPT},
                                     {"role": "assistant", "content": digit}],
                        "audios": [f"fsdd/{wav.name}"], "speaker": speaker})
    return records


def _turns(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def tri_records(out: Path, rows: list, vqa_rows: list[int], shared: Path) -> list[dict]:
    """Mixed conversations for tri_streaming: a digit image, a spoken digit, and both at once (same
    or not); every answer is one or two short sentences, so the spoken reply starts after its first
    sentence. Recordings keep their speaker (theo is held out, as in omni)."""
    (out / "digits").mkdir(parents=True)
    (out / "fsdd").mkdir(parents=True)
    images: dict[int, list[str]] = {d: [] for d in range(10)}
    for number in vqa_rows:
        pixels, label = rows[number]
        if len(images[label]) < TRI_PER_CLASS:
            name = f"digits/d{number:04d}.png"
            digit_image(pixels).save(out / name, optimize=True)
            images[label].append(name)
    records = [{"messages": _turns(TRI_IMAGE_PROMPT, f"It is {d}."), "images": [name], "kind": "image"}
               for d in range(10) for name in images[d]]
    recordings = sorted((p for p in (shared / "fsdd" / "recordings").glob("*.wav")
                         if int(p.stem.split("_")[2]) in TRI_TAKES),
                        key=lambda p: (p.stem.split("_")[1], int(p.stem.split("_")[0]), int(p.stem.split("_")[2])))
    rng = random.Random(SEED)
    for i, wav in enumerate(recordings):
        digit, speaker, _ = wav.stem.split("_")
        shutil.copyfile(wav, out / "fsdd" / wav.name)
        audio = f"fsdd/{wav.name}"
        records.append({"messages": _turns(TRI_AUDIO_PROMPT, f"It is {digit}."), "audios": [audio],
                        "speaker": speaker, "kind": "audio"})
        shown = int(digit) if i % 2 == 0 else rng.choice([d for d in range(10) if d != int(digit)])
        answer = (f"Yes. Both are {digit}." if shown == int(digit)
                  else f"No. The image shows {shown} and the voice says {digit}.")
        records.append({"messages": _turns(TRI_BOTH_PROMPT, answer), "images": [rng.choice(images[shown])],
                        "audios": [audio], "speaker": speaker, "kind": "image_audio"})
    return records


def tri_text_records(samples: Path) -> list[dict]:
    """Short real alpaca chats (text in; the reply streams as text and speech), in ``messages`` form."""
    alpaca = json.loads((samples / "llamafactory" / "data" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    chats = [r for r in alpaca if not r["input"] and len(r["output"]) < 160 and len(r["instruction"]) < 120
             and r["output"].isascii()][:TRI_TEXT]
    return [{"messages": _turns(r["instruction"], r["output"]), "kind": "text"} for r in chats]


def copy_llamafactory(out: Path, shared: Path, demo: str) -> None:
    """A LLaMA-Factory demo file and the media it names, byte for byte, in upstream's layout."""
    source = shared / "llamafactory" / "data"
    target = out / "llamafactory"
    (target / "mllm_demo_data").mkdir(parents=True)
    shutil.copyfile(source / demo, target / demo)
    shutil.copyfile(shared / "llamafactory" / "LICENSE", target / "LICENSE")
    for record in json.loads((source / demo).read_text(encoding="utf-8")):
        for media in (*record.get("audios", []), *record.get("videos", []), *record.get("images", [])):
            shutil.copyfile(source / media, target / media)


def write_clip(path: Path, images: list) -> None:
    """``images`` (8x8 L) shown in turn, FRAMES_PER_DIGIT frames each, as a small H.264 MP4."""
    import av
    from PIL import Image

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(CLIP_FPS),
                                      options={"crf": "10", "preset": "medium", "threads": "1"})
        stream.width = stream.height = CLIP_SIZE
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for image in images:
            frame_image = image.resize((CLIP_SIZE, CLIP_SIZE), Image.Resampling.NEAREST).convert("RGB")
            for _ in range(FRAMES_PER_DIGIT):
                container.mux(stream.encode(av.VideoFrame.from_image(frame_image)))
        container.mux(stream.encode(None))


def clip_records(out: Path, rows: list, pool: dict[int, list[int]]) -> list[dict]:
    (out / "clips").mkdir(parents=True)
    rng = random.Random(SEED)
    for numbers in pool.values():
        rng.shuffle(numbers)
    cursor = {d: 0 for d in pool}
    records = []
    for index in range(CLIPS):
        digits: list[int] = []
        while len(digits) < CLIP_DIGITS:  # no digit twice in a row: each shown digit is one item
            digit = rng.randrange(10)
            if not digits or digit != digits[-1]:
                digits.append(digit)
        used = []
        for digit in digits:
            used.append(pool[digit][cursor[digit] % len(pool[digit])])
            cursor[digit] += 1
        name = f"clips/c{index:03d}.mp4"
        write_clip(out / name, [digit_image(rows[n][0]) for n in used])
        records.append({"messages": [{"role": "user", "content": VIDEO_PROMPT},
                                     {"role": "assistant", "content": " ".join(map(str, digits))}],
                        "videos": [name], "source_rows": used})
    return records


def dreambooth_records(out: Path, shared: Path) -> list[dict]:
    """The DreamBooth dog: its 5 photos copied unmodified, each with the instance prompt (train), and
    the paper's 25 live-subject prompts (unique token sks, class dog) held out (test), each paired
    with one photo in turn as the reference the DINO score compares with (not a caption of it)."""
    source = shared / "dreambooth" / "dataset"
    (out / "dog").mkdir(parents=True)
    photos = sorted(p.name for p in (source / "dog").glob("*.jpg"))
    for name in photos:
        shutil.copyfile(source / "dog" / name, out / "dog" / name)
    text = (source / "prompts_and_classes.txt").read_text(encoding="utf-8")
    live = [p.format("sks", "dog") for p in LIVE_SUBJECT_PROMPT.findall(text.split("Live Subject Prompts", 1)[1])]
    records = [{"image": f"dog/{name}", "text": INSTANCE_PROMPT, "split": "train"} for name in photos]
    records += [{"image": f"dog/{photos[n % len(photos)]}", "text": prompt, "split": "test"}
                for n, prompt in enumerate(live)]
    return records


def video_caption_records(out: Path, video: Path, sequences: list[dict]) -> list[dict]:
    """The first VIDEO_CAPTIONED clips of video_understanding, copied, each captioned with the digits it
    shows in order (its record's answer); the last VIDEO_HELD_OUT are held out."""
    (out / "clips").mkdir(parents=True)
    records = []
    for index, record in enumerate(sequences[:VIDEO_CAPTIONED]):
        name = record["videos"][0]
        shutil.copyfile(video / name, out / name)
        digits = record["messages"][-1]["content"].split()
        shown = ", ".join(digits[:-1]) + f" and {digits[-1]}"
        split = "test" if index >= VIDEO_CAPTIONED - VIDEO_HELD_OUT else "train"
        records.append({"video": name, "text": f"handwritten digits {shown}, one after another", "split": split})
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def build(samples: Path, shared: Path) -> dict[str, int]:
    """Write the three folders' data under ``samples``; returns record counts per file."""
    rows = digit_rows(shared)
    omni_rows, vqa_rows, rest = split_rows(rows)
    omni, vqa, video = samples / "omni", samples / "vision_qa", samples / "video_understanding"
    tri, images, clips = samples / "tri_streaming", samples / "image_generation", samples / "video_generation"
    for folder in (omni, vqa, video, tri, images, clips):
        folder.mkdir(parents=True, exist_ok=True)
        for name in OWNED[folder.name]:
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    counts = {}
    for path, records in (
        (omni / "digits_captions.json", image_records(omni, rows, omni_rows, CAPTION_PROMPT)),
        (omni / "spoken_digits.json", spoken_records(omni, shared)),
        (vqa / "digits_questions.json", image_records(vqa, rows, vqa_rows, QUESTION_PROMPT)),
        (video / "digit_sequences.json", clip_records(video, rows, rest)),
        (tri / "conversations.json", tri_records(tri, rows, vqa_rows, shared)),
        (tri / "text_chats.json", tri_text_records(SAMPLES)),
    ):
        write_records(path, records)
        counts[path.relative_to(samples).as_posix()] = len(records)
    sequences = json.loads((video / "digit_sequences.json").read_text(encoding="utf-8"))
    for captions, records in ((images / "captions.jsonl", dreambooth_records(images, shared)),
                              (clips / "captions.jsonl", video_caption_records(clips, video, sequences))):
        write_jsonl(captions, records)
        counts[captions.relative_to(samples).as_posix()] = len(records)
    copy_llamafactory(omni, shared, "mllm_audio_demo.json")
    copy_llamafactory(video, shared, "mllm_video_demo.json")
    return counts


def differences(built: Path, committed: Path) -> list[str]:
    """Paths (relative) that differ between a fresh build and the committed folders."""
    out = []
    for folder, names in OWNED.items():
        for name in names:
            for path in sorted((built / folder / name).rglob("*")) if (built / folder / name).is_dir() \
                    else [built / folder / name]:
                if path.is_file():
                    rel = path.relative_to(built)
                    if not (committed / rel).is_file() or not filecmp.cmp(path, committed / rel, shallow=False):
                        out.append(rel.as_posix())
            old = committed / folder / name
            if old.is_dir():
                out += [p.relative_to(committed).as_posix() for p in sorted(old.rglob("*"))
                        if p.is_file() and not (built / p.relative_to(committed)).is_file()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help=f"the offline datasets (default: {SHARED})")
    parser.add_argument("--out", type=Path, default=SAMPLES, help=f"samples folder to write (default: {SAMPLES})")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with --out")
    args = parser.parse_args(argv)
    if not (args.shared / "digits" / "digits.csv.gz").is_file():
        print(f"error: {args.shared}: no digits/digits.csv.gz; pass --shared <datasets folder>", file=sys.stderr)
        return 1
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.shared)
            changed = differences(Path(tmp), args.out)
        print("\n".join(changed) if changed else "up to date: a rebuild gives the same bytes")
        return 1 if changed else 0
    for path, n in build(args.out, args.shared).items():
        print(f"{path}: {n} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
