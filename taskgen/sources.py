"""Image sources: where the clean images that tasks degrade or transform come from.

- ``photos``: real colour photos shipped inside installed packages (scikit-image, matplotlib),
  loaded offline. The default *test* source; never used for training.
- ``deadleaves``: the procedural dead-leaves generator (``taskgen.deadleaves``). The default
  *train* source.
- ``folder:PATH``: a user's image folder (ImageNet, DIV2K, Common528, ...), recursive, with
  optional depth maps ``<stem>_depth.png`` / ``<stem>_depth.npy`` beside the images.

A source maps ``(index, size, rng)`` to a ``SourceImage`` deterministically. Sources are selected by
spec strings; several joined by ``+`` are interleaved by index (``deadleaves+folder:/data/div2k``).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from .deadleaves import (MAX_CAMERA_BLUR, MAX_LEVELS, MAX_TEXTURE_AMP, MIN_CAMERA_BLUR, MIN_TEXTURE_AMP,
                         DeadLeavesConfig, dead_leaves)
from .images import random_crop_box, resize_short_side
from .imageio import IMAGE_SUFFIXES, UnreadableImage, read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceImage:
    image: np.ndarray                 # uint8 RGB HxWx3
    depth: np.ndarray | None          # float32 HxW in [0, 1], 1 = far; None if the source has none
    source_id: str                    # e.g. "photo:astronaut@y=10,x=200" or "deadleaves"


class Source(Protocol):
    name: str

    def sample(self, index: int, size: int, rng: np.random.Generator) -> SourceImage: ...


class SourceError(ValueError):
    """A source that cannot produce images (e.g. a folder with no usable image)."""


def depth_proxy(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 HxW pseudo-depth in [0, 1] (1 = far) for photos without depth.

    A documented heuristic, not a depth estimator: upper rows are farther (ground-plane prior),
    and bright, unsaturated, smooth regions (sky, distant haze) are farther (as in the dark
    channel prior, the minimum channel is high where the scene is far). The two cues are averaged
    and smoothed with a large Gaussian so haze varies smoothly across objects.
    """
    h, w = image.shape[:2]
    f = image.astype(np.float32) / 255.0
    dark = cv2.erode(f.min(axis=2), np.ones((15, 15), np.uint8))
    rows = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(w, axis=1)
    depth = 0.55 * rows + 0.45 * dark
    depth = cv2.GaussianBlur(depth, (0, 0), sigmaX=max(h, w) / 24.0)
    lo, hi = float(depth.min()), float(depth.max())
    return ((depth - lo) / max(hi - lo, 1e-6)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Packaged test photos

def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return skimage.data.stereo_motorcycle()[side]
    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        return read_image(cbook.get_sample_data(filename, asfileobj=False))
    return load


# Real colour photographs that load offline from installed packages.
PHOTO_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """One packaged test photo as uint8 RGB (cached; read-only)."""
    try:
        loader = PHOTO_LOADERS[name]
    except KeyError:
        raise SourceError(f"unknown packaged photo {name!r}; known: {', '.join(PHOTO_LOADERS)}") from None
    image = np.ascontiguousarray(loader()[:, :, :3])
    image.setflags(write=False)
    return image


@dataclass
class PhotoSource:
    """Deterministic crops of the packaged photos: sample i uses photo i mod n, crop drawn by rng."""

    names: tuple[str, ...] = tuple(PHOTO_LOADERS)
    name: str = "photos"

    def sample(self, index: int, size: int, rng: np.random.Generator) -> SourceImage:
        photo_name = self.names[index % len(self.names)]
        photo = resize_short_side(load_photo(photo_name), size)
        y, x = random_crop_box(photo.shape, size, rng)
        crop = np.ascontiguousarray(photo[y:y + size, x:x + size])
        return SourceImage(crop, None, f"photo:{photo_name}@y={y},x={x}")


@dataclass
class DeadLeavesSource:
    """Procedural dead-leaves images with their layer depth map."""

    name: str = "deadleaves"
    config: DeadLeavesConfig = DeadLeavesConfig()

    def sample(self, index: int, size: int, rng: np.random.Generator) -> SourceImage:
        image, depth = dead_leaves(size, rng, self.config)
        return SourceImage(image, depth, self.name)


# option -> (DeadLeavesConfig field, smallest value, largest value), in the canonical name's order
_DEAD_LEAVES_OPTIONS = {"tint": ("tint_sigma", 0.0, 1.0), "exposure": ("exposure_sigma", 0.0, 1.0),
                        "levels": ("levels", 0.0, MAX_LEVELS), "blur": ("camera_blur", 0.0, MAX_CAMERA_BLUR),
                        "rmin": ("r_min", 0.005, 0.2), "texture": ("texture_prob", 0.0, 1.0),
                        "texamp": ("texture_amp", MIN_TEXTURE_AMP, MAX_TEXTURE_AMP)}
_DEAD_LEAVES_USAGE = (f"options are tint=S and exposure=E in [0, 1], levels=L in [0, {MAX_LEVELS:g}], "
                      f"blur=B (0 or in [{MIN_CAMERA_BLUR:g}, {MAX_CAMERA_BLUR:g}] px), rmin=R in [0.005, 0.2], "
                      f"texture=P in [0, 1] (fraction of textured leaves) and texamp=A in "
                      f"[{MIN_TEXTURE_AMP:g}, {MAX_TEXTURE_AMP:g}] (largest texture amplitude), "
                      f"comma-separated (e.g. deadleaves:tint=0.25,exposure=0.5,levels=0.3,blur=0.8,rmin=0.04)")


def _dead_leaves_source(arg: str) -> DeadLeavesSource:
    """``deadleaves`` or ``deadleaves:tint=S,exposure=E,levels=L,blur=B,rmin=R,texture=P,texamp=A``
    (DeadLeavesConfig.tint_sigma, .exposure_sigma, .levels, .camera_blur, .r_min, .texture_prob, .texture_amp);
    any subset, in any order."""
    if not arg:
        return DeadLeavesSource()
    values: dict[str, float] = {}
    for option in arg.split(","):
        key, _, text = option.partition("=")
        try:
            value = float(text)
        except ValueError:
            raise SourceError(f"deadleaves:{arg}: {_DEAD_LEAVES_USAGE}") from None
        if key not in _DEAD_LEAVES_OPTIONS or key in values or not \
                _DEAD_LEAVES_OPTIONS[key][1] <= value <= _DEAD_LEAVES_OPTIONS[key][2]:
            raise SourceError(f"deadleaves:{arg}: {_DEAD_LEAVES_USAGE}")
        values[key] = value
    name = "deadleaves:" + ",".join(f"{key}={values[key]:g}" for key in _DEAD_LEAVES_OPTIONS if key in values)
    try:
        config = DeadLeavesConfig(**{_DEAD_LEAVES_OPTIONS[key][0]: value for key, value in values.items()})
    except ValueError as err:
        raise SourceError(f"deadleaves:{arg}: {err}; {_DEAD_LEAVES_USAGE}") from None
    return DeadLeavesSource(name=name, config=config)


# --------------------------------------------------------------------------------------------
# User folders

def first_usable(items: list, index: int, load: Callable):
    """``(item, load(item))`` for the first item at or after position ``index mod n`` whose load
    is not None, or None. Skipping forward keeps a sample's choice a function of the files alone."""
    n = len(items)
    for step in range(n):
        item = items[(index + step) % n]
        loaded = load(item)
        if loaded is not None:
            return item, loaded
    return None


_DEPTH_SUFFIXES = ("_depth.png", "_depth.npy")


def _is_depth_file(path: Path) -> bool:
    return any(path.name.endswith(s) for s in _DEPTH_SUFFIXES)


def _read_depth(image_path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    for suffix in _DEPTH_SUFFIXES:
        cand = image_path.with_name(image_path.stem + suffix)
        if not cand.exists():
            continue
        if suffix.endswith(".npy"):
            depth = np.load(cand, allow_pickle=False).astype(np.float32)
        else:
            depth = cv2.imread(str(cand), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise UnreadableImage(cand, "unreadable depth map")
            if depth.ndim == 3:
                depth = depth[:, :, 0]
            depth = depth.astype(np.float32)
        if depth.shape != shape:
            raise UnreadableImage(cand, f"depth map {depth.shape} does not match image {shape}")
        lo, hi = float(depth.min()), float(depth.max())
        return (depth - lo) / max(hi - lo, 1e-6)
    return None


@dataclass
class FolderSource:
    """Images from a user folder (recursive, sorted), cropped to the requested size.

    Bad files (zero-byte, truncated, corrupt, not images) and images smaller than the crop (unless
    ``upscale``) are skipped: sample ``i`` takes the first usable file at or after position
    ``i mod n`` so the result depends on the files alone, never on which worker asked. Skips are
    counted in ``skipped`` and logged once per file.
    """

    root: Path
    upscale: bool = False
    name: str = field(default="")
    skipped: Counter = field(default_factory=Counter)
    _bad: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)
        self.name = self.name or f"folder:{self.root}"
        if not self.root.is_dir():
            raise SourceError(f"image folder {self.root} does not exist or is not a folder")
        self.files = sorted(p for p in self.root.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _is_depth_file(p))
        if not self.files:
            raise SourceError(f"image folder {self.root} holds no image files ({', '.join(IMAGE_SUFFIXES)})")

    def _skip(self, path: Path, reason: str) -> None:
        if path not in self._bad:
            self._bad[path] = reason
            self.skipped[reason] += 1
            log.warning("skipping %s: %s", path, reason)

    def _load(self, path: Path, size: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        if path in self._bad:
            return None
        try:
            image = read_image(path)
            depth = _read_depth(path, image.shape[:2])
        except UnreadableImage as err:
            self._skip(path, err.reason)
            return None
        if min(image.shape[:2]) < size:
            if not self.upscale:
                self._skip(path, f"smaller than the {size}px crop")
                return None
            image = resize_short_side(image, size)
            if depth is not None:
                depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        return image, depth

    def sample(self, index: int, size: int, rng: np.random.Generator) -> SourceImage:
        found = first_usable(self.files, index, lambda path: self._load(path, size))
        if found is not None:
            path, (image, depth) = found
            y, x = random_crop_box(image.shape, size, rng)
            crop = np.ascontiguousarray(image[y:y + size, x:x + size])
            depth_crop = None if depth is None else np.ascontiguousarray(depth[y:y + size, x:x + size])
            rel = path.relative_to(self.root).as_posix()
            return SourceImage(crop, depth_crop, f"folder:{rel}@y={y},x={x}")
        reasons = ", ".join(f"{k}: {v}" for k, v in self.skipped.items())
        raise SourceError(f"image folder {self.root} has no usable image for {size}px crops ({reasons})")

    def scan(self, size: int) -> dict:
        """Check every file once; returns counts of usable files and of skips by reason."""
        usable = sum(self._load(p, size) is not None for p in self.files)
        return {"folder": str(self.root), "files": len(self.files), "usable": usable, "skipped": dict(self.skipped)}


@dataclass
class InterleavedSource:
    """Several sources, sample i taken from source i mod k."""

    parts: tuple
    name: str = ""

    def __post_init__(self):
        self.name = self.name or "+".join(p.name for p in self.parts)

    def sample(self, index: int, size: int, rng: np.random.Generator) -> SourceImage:
        k = len(self.parts)
        return self.parts[index % k].sample(index // k, size, rng)


def _folder_path(kind: str, arg: str) -> Path:
    """The folder of a ``folder:PATH`` spec; an empty PATH would silently read the working folder."""
    if not arg.strip():
        raise SourceError(f"{kind}: needs a folder, e.g. {kind}:/data/div2k (an empty path would read the "
                          "working folder)")
    return Path(arg)


_SOURCE_FACTORIES: dict[str, Callable[[str], Source]] = {
    "photos": lambda arg: PhotoSource(tuple(arg.split(",")) if arg else tuple(PHOTO_LOADERS)),
    "deadleaves": _dead_leaves_source,
    "folder": lambda arg: FolderSource(_folder_path("folder", arg)),
    "folder-upscale": lambda arg: FolderSource(_folder_path("folder-upscale", arg), upscale=True),
}


def source_kinds() -> tuple[str, ...]:
    """The source kinds a spec may start with (``photos``, ``deadleaves``, ``folder``, ...), in registry order."""
    return tuple(_SOURCE_FACTORIES)


def build_source(spec: str) -> Source:
    """Parse a source spec: ``photos``, ``photos:astronaut,coffee``, ``deadleaves``,
    ``deadleaves:tint=0.2,exposure=0.5,levels=0.3``, ``folder:/path``, ``folder-upscale:/path``, or several joined by ``+``."""
    parts = [p for p in spec.split("+") if p]
    if not parts:
        raise SourceError(f"empty source spec {spec!r}")
    built = []
    for part in parts:
        kind, _, arg = part.partition(":")
        try:
            factory = _SOURCE_FACTORIES[kind]
        except KeyError:
            raise SourceError(f"unknown source {kind!r} in {spec!r}; known: {', '.join(_SOURCE_FACTORIES)}") from None
        built.append(factory(arg))
    return built[0] if len(built) == 1 else InterleavedSource(tuple(built))


DEFAULT_SOURCES = {"train": "deadleaves", "test": "photos", "unseen": "photos"}
