"""Generated frames -> files: an animated GIF (Pillow) and an H.264 MP4 (PyAV), each written whole."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any


def write_gif(frames: list[Any], path: Path, fps: int = 8) -> Path:
    """PIL ``frames`` as a looping GIF at ``fps``."""
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def write_mp4(frames: list[Any], path: Path, fps: int = 8) -> Path:
    """PIL ``frames`` as an H.264 MP4 (yuv420p, even sides: a frame is padded by a pixel where needed)."""
    import av

    width, height = frames[0].size
    even = (width + width % 2, height + height % 2)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"crf": "18", "threads": "1"})
        stream.width, stream.height = even
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = frame.convert("RGB")
            if image.size != even:
                from PIL import Image

                padded = Image.new("RGB", even)
                padded.paste(image)
                image = padded
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    return path
