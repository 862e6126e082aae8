"""Real paired datasets: (input, target) files a researcher owns, replacing a task's synthetic recipe.

A paired source is chosen per task and split in ``params.yaml`` (``synth: per_task: low_light:
paired: {test: "lol:/data/LOL/eval15"}``) and replaces that task's synthetic recipe for that split only; shards
record the source of every sample. Each layout names the folders it expects; ``check()`` explains
what is wrong when a tree does not match. Files are paired by name (a layout may map names, e.g.
RESIDE's many hazy images per clear one). Missing partners, size mismatches and unreadable files are
counted skips with reasons; a dataset with no usable pair left is an error naming the folder.
A sample's ``source_id`` names the *target* file (the scene) and the crop, so all inputs of one
scene share a source image and a prompt drawn from another source image never shows the query's
scene (see ``PairedSource``).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .imageio import IMAGE_SUFFIXES, UnreadableImage, read_image
from .images import random_crop_box, resize_short_side
from .sources import first_usable

log = logging.getLogger(__name__)
# Files without a partner are found when the pairs are matched by name, which every shard that
# reads the dataset repeats; synthesis logs them once up front and mutes this message after.
UNMATCHED_SKIP = "%s: skipping %s: %s (files are matched by name)"


class PairedLayoutError(ValueError):
    """A dataset folder whose layout does not match what its layout expects."""


def same_stem(stem: str) -> str:
    return stem


def reside_clear_id(stem: str) -> str:
    """RESIDE hazy files are ``<clear id>_<A>_<beta>``; all of them pair with ``<clear id>``."""
    return stem.split("_")[0]


def rain100_id(stem: str) -> str:
    """Rain100L/H ship ``rain-001`` / ``norain-001``; both map to ``001``."""
    for prefix in ("norain-", "rain-"):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


@dataclass(frozen=True)
class PairLayout:
    name: str
    dataset: str                       # what it is, for the docs
    input_dirs: tuple[str, ...]        # candidate sub-folders holding inputs (first existing wins)
    target_dirs: tuple[str, ...]
    tasks: tuple[str, ...]             # tasks the dataset is meant for
    input_key: Callable[[str], str] = same_stem
    target_key: Callable[[str], str] = same_stem


LAYOUTS: dict[str, PairLayout] = {layout.name: layout for layout in (
    PairLayout("lol", "LOL (our485 or eval15 folder)", ("low",), ("high",), ("low_light",)),
    PairLayout("fivek", "MIT-Adobe FiveK, expert C", ("input",), ("expert", "expertC", "expert_c"),
               ("retouch", "local_laplacian", "tone_multiscale", "pencil", "photographic", "rtv")),
    PairLayout("uieb", "UIEB", ("raw", "raw-890"), ("reference", "reference-890"),
               ("underwater_contrast", "underwater_color")),
    PairLayout("reside", "RESIDE ITS / SOTS (many hazy per clear)", ("hazy",), ("clear", "gt", "GT"),
               ("haze",), input_key=reside_clear_id),
    PairLayout("rain", "Rain13K / Rain100L / Rain100H / Test100", ("input", "rainy"), ("target", "norain"),
               ("rain_simple", "rain_complex"), input_key=rain100_id, target_key=rain100_id),
    PairLayout("hdrtv", "HDRTV1K (SDR 8-bit, HDR 16-bit PNG)", ("sdr", "test_sdr"), ("hdr", "test_hdr"),
               ("sdr_to_hdr",)),
    PairLayout("hdrtv-reverse", "HDRTV1K read HDR -> SDR", ("hdr", "test_hdr"), ("sdr", "test_sdr"),
               ("hdr_to_sdr",)),
    PairLayout("biped", "BIPED (images / edge maps)", ("images", "imgs/train/rgbr/real", "imgs/test/rgbr"),
               ("edges", "edge_maps/train/rgbr/real", "edge_maps/test/rgbr"), ("perceptual_edges",)),
    PairLayout("adaattn", "AdaAttN outputs (content / stylized)", ("content",), ("stylized",),
               ("vermeer", "jojo", "raphael", "fauvism", "divisionism", "cloisonnism")),
)}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_dir(root: Path, candidates: tuple[str, ...], side: str, layout: str) -> Path:
    for cand in candidates:
        if (root / cand).is_dir():
            return root / cand
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise PairedLayoutError(
        f"{layout} dataset at {root}: no {side} folder; expected one of {', '.join(candidates)} "
        f"inside it, found: {', '.join(present) or 'no sub-folders'}")


@dataclass(frozen=True)
class PairedImage:
    input: np.ndarray
    target: np.ndarray
    source_id: str    # "<name>:<target file>@y=<row>,x=<col>", e.g. "reside:1400.png@y=3,x=9"


@dataclass
class PairedSource:
    """Aligned pairs from an input folder and a target folder, matched by (mapped) file stem.

    Sample ``i`` takes the first usable pair at or after position ``i mod n`` and the same random
    crop of both sides. ``hdr`` ("input"/"target") keeps that side 16-bit and requires it to be.
    Its ``source_id`` is ``<name>:<target file, relative to target_dir>@y=<row>,x=<col>``: it names
    the scene (the target), not the input, so inputs sharing one target (RESIDE's hazy variants of
    one clear image) count as one source image wherever ``taskgen.shards.source_image_id`` groups
    samples (training prompts, test prompt rules, bench prompt/query splits). In one-to-one layouts
    (LOL) every input has its own target, so the ids stay distinct per pair.
    """

    input_dir: Path
    target_dir: Path
    name: str = "paired"
    input_key: Callable[[str], str] = same_stem
    target_key: Callable[[str], str] = same_stem
    hdr: str = ""
    upscale: bool = False
    skipped: Counter = field(default_factory=Counter)
    _bad: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.input_dir, self.target_dir = Path(self.input_dir), Path(self.target_dir)
        for side, folder in (("input", self.input_dir), ("target", self.target_dir)):
            if not folder.is_dir():
                raise PairedLayoutError(f"{self.name}: {side} folder {folder} does not exist")
        targets: dict[str, Path] = {}
        for path in _image_files(self.target_dir):
            targets.setdefault(self.target_key(path.stem), path)
        self.pairs: list[tuple[Path, Path]] = []
        matched = set()
        for path in _image_files(self.input_dir):
            key = self.input_key(path.stem)
            if key in targets:
                self.pairs.append((path, targets[key]))
                matched.add(key)
            else:
                self._skip(path, "no target partner", UNMATCHED_SKIP)
        for key, path in targets.items():
            if key not in matched:
                self._skip(path, "no input partner", UNMATCHED_SKIP)
        if not self.pairs:
            raise PairedLayoutError(
                f"{self.name}: no pairs between {self.input_dir} and {self.target_dir} "
                f"(files are matched by name; skipped: {dict(self.skipped) or 'nothing to match'})")

    def _skip(self, path: Path, reason: str, message: str = "%s: skipping %s: %s") -> None:
        if path not in self._bad:
            self._bad[path] = reason
            self.skipped[reason] += 1
            log.warning(message, self.name, path, reason)

    def _read(self, path: Path, side: str) -> np.ndarray:
        image = read_image(path, keep_16bit=(self.hdr == side))
        if self.hdr == side and image.dtype != np.uint16:
            raise UnreadableImage(path, f"expected a 16-bit HDR {side}, found 8-bit")
        return image

    def _load(self, pair: tuple[Path, Path], size: int):
        if pair[0] in self._bad or pair[1] in self._bad:
            return None
        try:
            inp, tgt = self._read(pair[0], "input"), self._read(pair[1], "target")
        except UnreadableImage as err:
            self._skip(Path(err.path), err.reason)
            return None
        if inp.shape[:2] != tgt.shape[:2]:
            self._skip(pair[0], f"size mismatch {inp.shape[1]}x{inp.shape[0]} vs target "
                                f"{tgt.shape[1]}x{tgt.shape[0]}")
            return None
        if min(inp.shape[:2]) < size:
            if not self.upscale:
                self._skip(pair[0], f"smaller than the {size}px crop")
                return None
            inp, tgt = resize_short_side(inp, size), resize_short_side(tgt, size)
        return inp, tgt

    def sample(self, index: int, size: int, rng: np.random.Generator) -> PairedImage:
        found = first_usable(self.pairs, index, lambda pair: self._load(pair, size))
        if found is not None:
            pair, (inp, tgt) = found
            y, x = random_crop_box(inp.shape, size, rng)
            crop = (slice(y, y + size), slice(x, x + size))
            # The scene is the target file: inputs sharing one target (RESIDE) are one source image.
            rel = pair[1].relative_to(self.target_dir).as_posix()
            return PairedImage(np.ascontiguousarray(inp[crop]), np.ascontiguousarray(tgt[crop]),
                               f"{self.name}:{rel}@y={y},x={x}")
        raise PairedLayoutError(f"{self.name}: no usable pair for {size}px crops in {self.input_dir} "
                                f"(skipped: {dict(self.skipped)})")

    def scan(self, size: int) -> dict:
        usable = sum(self._load(p, size) is not None for p in self.pairs)
        return {"name": self.name, "pairs": len(self.pairs), "usable": usable, "skipped": dict(self.skipped)}


def open_layout(layout_name: str, root: str | Path, hdr: str = "") -> PairedSource:
    """A named dataset layout at ``root`` (e.g. ``open_layout("lol", "/data/LOL/eval15")``)."""
    try:
        layout = LAYOUTS[layout_name]
    except KeyError:
        raise PairedLayoutError(f"unknown paired dataset {layout_name!r}; known: {', '.join(LAYOUTS)}, "
                                "or paired:INPUT_DIR,TARGET_DIR") from None
    root = Path(root)
    if not root.is_dir():
        raise PairedLayoutError(f"{layout_name} dataset folder {root} does not exist")
    return PairedSource(_find_dir(root, layout.input_dirs, "input", layout_name),
                        _find_dir(root, layout.target_dirs, "target", layout_name),
                        name=f"{layout_name}", input_key=layout.input_key, target_key=layout.target_key,
                        hdr=hdr)


def paired_folder(input_dir: str | Path, target_dir: str | Path, hdr: str = "") -> PairedSource:
    """Generic pairs: files of ``input_dir`` and ``target_dir`` matched by file stem."""
    return PairedSource(Path(input_dir), Path(target_dir), name="paired", hdr=hdr)


def build_paired_source(spec: str, hdr: str = "") -> PairedSource:
    """Parse ``LAYOUT:ROOT`` (``lol:/data/LOL/eval15``) or ``paired:INPUT_DIR,TARGET_DIR``."""
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise PairedLayoutError(f"paired source {spec!r}: expected LAYOUT:FOLDER or paired:INPUT_DIR,TARGET_DIR")
    if kind == "paired":
        parts = arg.split(",")
        if len(parts) != 2:
            raise PairedLayoutError(f"paired source {spec!r}: expected paired:INPUT_DIR,TARGET_DIR")
        return paired_folder(parts[0], parts[1], hdr=hdr)
    return open_layout(kind, arg, hdr=hdr)
