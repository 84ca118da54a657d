"""Sample inputs for the tests, benchmarks and the demo, from packages that ship them (never downloaded at run time):
photos from scikit-image and LibriVox recordings with transcripts from Debian's ``pocketsphinx-testdata``.

A missing package raises :class:`axcl_ros.assets.AssetNotFoundError` with the command that installs it.
"""

from __future__ import annotations

from pathlib import Path

from axcl_ros.assets import AssetNotFoundError

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")


def librivox_utterances() -> list:
    """``[(wav path, reference transcript)]`` from Debian's ``pocketsphinx-testdata`` (BSD-2, public-domain audio)."""
    folder = POCKETSPHINX_DATA / "librivox"
    listing = folder / "transcription"
    if not listing.is_file():
        raise AssetNotFoundError(f"{listing} missing: apt-get install pocketsphinx-testdata")
    out = []
    for line in listing.read_text().splitlines():
        line = line.strip()
        if not line.endswith(")") or "(" not in line:
            continue
        text, utt = line.rsplit("(", 1)
        wav = folder / f"{utt.rstrip(')').strip()}.wav"
        words = [w for w in text.split() if w not in ("<s>", "</s>", "<sil>")]
        if wav.is_file():
            out.append((wav, " ".join(words)))
    if not out:
        raise AssetNotFoundError(f"no utterances listed in {listing}")
    return out


def skimage_image(name: str):
    """A scikit-image sample image (RGB uint8 array), e.g. ``astronaut``, ``coffee``, ``chelsea``."""
    try:
        from skimage import data
    except ImportError as exc:
        raise AssetNotFoundError("scikit-image not installed: pip install scikit-image==0.26.0") from exc
    return getattr(data, name)()
