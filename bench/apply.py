"""Apply any generalist to user images: full-resolution tiling, the official resize mode, bit depths,
several prompt pairs.

Two ways to fit an image of any size to a model trained on ``tile``² crops:

- tiled (default): the image is cut into ``tile``² tiles that overlap by at least ``overlap``
  pixels; each tile's output is weighted by a raised-cosine window that ramps up inside the
  overlap (only on sides shared with another tile) and the sum is divided by the summed weights,
  so a pointwise model gives exactly its untiled output and a model with a small receptive field
  shows no seam. Images smaller than a tile are reflect-padded to a full tile and cropped back.
- resized (``resize=True``): query and prompts are resized to ``tile``² and the output back to the
  query's size, as GenLV's and PromptGIP's inference scripts do (for comparisons with them).

The prompt pair is always resized to ``tile``² (the prompt size the model was trained with).
Several pairs are combined by averaging their prompt embeddings when the generalist allows it
(a ``predict_with_prompts(query, prompt_inputs, prompt_targets)`` method, or a GenLV network
behind the ``checkpoint`` built-in); otherwise each pair is run and the outputs are averaged,
which ``PromptSet.combine`` says. Arrays are HWC numpy (uint8 or uint16) at the edges and
float32 B×3×H×W torch tensors in [0, 1] inside; torch is imported where a model runs.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_TILE = 256     # the paper's training crop
DEFAULT_OVERLAP = 32
OUTPUT_SUFFIX = ".png"  # lossless and 16-bit capable, whatever the input format


class ApplyError(ValueError):
    """A run that cannot start or an image a model cannot take; the message says what to change."""


# ----------------------------------------------------------------------------- tiling geometry

def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length) with neighbours overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ApplyError(f"overlap {overlap} must be smaller than the tile {tile}")
    count = math.ceil((length - overlap) / stride)
    # Spread the tiles evenly so that the last one ends on the border instead of sticking out.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def ramp_window(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D float64 blending weights in (0, 1]: raised-cosine ramps of ``overlap`` samples on the chosen ends."""
    weights = np.ones(length, dtype=np.float64)
    ramp_len = min(overlap, length // 2)
    if ramp_len <= 0:
        return weights
    # Half-sample offsets keep every weight strictly positive, so the normalising sum never vanishes.
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_len) + 0.5) / ramp_len)
    if ramp_start:
        weights[:ramp_len] = ramp
    if ramp_end:
        weights[length - ramp_len:] = ramp[::-1]
    return weights


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    weights: np.ndarray  # tile×tile float64 blending window


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles (with their blending windows) covering an image of at least ``tile`` on each side."""
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)

    def windows(starts: list[int]) -> list[np.ndarray]:
        last = len(starts) - 1
        return [ramp_window(tile, overlap, i > 0, i < last) for i in range(len(starts))]

    wy, wx = windows(ys), windows(xs)
    return [Tile(y, x, np.outer(wy[i], wx[j])) for i, y in enumerate(ys) for j, x in enumerate(xs)]


def pad_to_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """HWC array -> padded bottom/right to at least ``tile`` per side (reflect, replicate if too small)."""
    pad_h, pad_w = max(0, tile - image.shape[0]), max(0, tile - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image
    mode = "reflect" if pad_h < image.shape[0] and pad_w < image.shape[1] else "edge"
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


# ----------------------------------------------------------------------------- numeric conversions

def to_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 (÷255) or uint16 (÷65535) HWC -> float32 HWC in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    raise TypeError(f"images must be uint8 or uint16, got {image.dtype}")


def from_unit_float(image: np.ndarray, dtype) -> np.ndarray:
    """float HWC in [0, 1] (clamped) -> uint8 or uint16 HWC, rounded."""
    top = 65535.0 if np.dtype(dtype) == np.uint16 else 255.0
    return np.rint(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def resize_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 HWC -> float32 at (H, W) = ``size``: area when shrinking, bicubic when enlarging."""
    import cv2

    if image.shape[:2] == tuple(size):
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (size[1], size[0]), interpolation=interp)


def _to_tensor(images: Sequence[np.ndarray], device):
    """float32 HWC arrays of one shape -> float32 B×3×H×W tensor on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).to(device).float()


def _to_numpy(batch) -> np.ndarray:
    """B×3×H×W tensor -> float32 B×H×W×3 numpy on the CPU."""
    return batch.detach().float().cpu().permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- prompts

@dataclass
class PromptSet:
    """Prompt pairs at the model's prompt size (float32 HWC in [0, 1]) and how they are combined."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    notes: list[str] = field(default_factory=list)
    combine: str = "single pair"
    files: list[Path] = field(default_factory=list)  # the prompt image files, never to be overwritten


def prepare_prompts(pairs: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
                    names: Sequence[tuple[str, str]] | None = None) -> PromptSet:
    """(prompt input, prompt target) uint8/uint16 arrays -> a ``PromptSet`` resized to ``size``²;
    a target whose size differs from its input is resized to the input's size first, with a note."""
    if not pairs:
        raise ApplyError("at least one prompt pair (--prompt-input A --prompt-target B) is needed")
    if size < 1:
        raise ApplyError(f"the prompt size (--tile) must be positive, got {size}")
    prompt_set = PromptSet([], [])
    for index, (p_in, p_out) in enumerate(pairs):
        label = f"prompt pair {index + 1}" + (f" ({names[index][0]}, {names[index][1]})" if names else "")
        p_in, p_out = to_unit_float(p_in), to_unit_float(p_out)
        if p_in.shape[:2] != p_out.shape[:2]:
            prompt_set.notes.append(f"{label}: target {p_out.shape[1]}×{p_out.shape[0]} resized to the input's "
                                    f"{p_in.shape[1]}×{p_in.shape[0]}")
            p_out = resize_float(p_out, p_in.shape[:2])
        prompt_set.inputs.append(resize_float(p_in, (size, size)))
        prompt_set.targets.append(resize_float(p_out, (size, size)))
    return prompt_set


class _GenLVEmbeddings:
    """Averages prompt embeddings through a GenLV network's ``encode_prompt``/``forward_with_prompt``."""

    def __init__(self, network, multiple: int, flip_colours: bool, device, resize_rule: str = ""):
        self.network, self.multiple, self.flip, self.device = network, multiple, flip_colours, device
        self.resize_rule = resize_rule  # official GenLV weights: the authors' 256² resize, as the generalist does

    def __call__(self, queries, prompt_inputs, prompt_targets):
        import torch

        from .adapters import official_genlv_resize, pad_to_multiple, resize_back

        colour = (lambda t: t.flip(1)) if self.flip else (lambda t: t)  # official weights expect BGR
        with torch.inference_mode():
            if self.resize_rule:
                fit = lambda t: colour(official_genlv_resize(t, self.resize_rule))  # noqa: E731
                keys, values = zip(*(self.network.encode_prompt(fit(p_in), fit(p_out))
                                     for p_in, p_out in zip(prompt_inputs, prompt_targets)))
                key, value = torch.stack(keys).mean(0), torch.stack(values).mean(0)
                batch = queries.shape[0]
                out = self.network.forward_with_prompt(fit(queries), key.expand(batch, -1, -1),
                                                       value.expand(batch, -1, -1))
                return resize_back(colour(out).clamp(0, 1), tuple(queries.shape[-2:]))
            # Padded like the checkpoint built-in pads them, so both paths see the same prompt pixels.
            pad = lambda t: pad_to_multiple(colour(t), self.multiple)[0]  # noqa: E731
            keys, values = zip(*(self.network.encode_prompt(pad(p_in), pad(p_out))
                                 for p_in, p_out in zip(prompt_inputs, prompt_targets)))
            key, value = torch.stack(keys).mean(0), torch.stack(values).mean(0)
            padded, (h, w) = pad_to_multiple(colour(queries), self.multiple)
            batch = padded.shape[0]
            out = self.network.forward_with_prompt(padded, key.expand(batch, -1, -1), value.expand(batch, -1, -1))
            return colour(out)[..., :h, :w]


def embedding_averager(generalist, device) -> Callable | None:
    """A callable ``(queries, [1×3×S×S prompt inputs], [targets]) -> outputs`` that averages prompt
    embeddings, or None when the generalist offers no way to do it."""
    method = getattr(generalist, "predict_with_prompts", None)
    if callable(method):
        return method
    network = getattr(generalist, "network", None)  # the checkpoint built-in builds it here
    if network is None:
        return None
    from model.checkpoints import BGRWeights

    from .builtins import encodes_prompts_apart

    flip = isinstance(network, BGRWeights)
    core = network.net if flip else network
    if not encodes_prompts_apart(core):
        return None
    return _GenLVEmbeddings(core, int(core.config.query_multiple), flip, device,
                            getattr(generalist, "official_resize_rule", ""))


# ----------------------------------------------------------------------------- the runner

@dataclass(frozen=True)
class ApplyConfig:
    tile: int = DEFAULT_TILE        # model size: tile side, prompt side, and the --resize target
    overlap: int = DEFAULT_OVERLAP
    batch: int = 4                  # tiles (or resized images) per predict call
    resize: bool = False            # the official behaviour: everything resized to tile²

    def __post_init__(self):
        if self.tile < 1:
            raise ApplyError(f"the tile size (--tile) must be positive, got {self.tile}")
        if self.batch < 1:
            raise ApplyError(f"the batch (--batch) must be positive, got {self.batch}")
        if self.overlap < 0:
            raise ApplyError(f"the overlap (--overlap) must be 0 or more, got {self.overlap}")
        if self.overlap >= self.tile:
            raise ApplyError(f"overlap {self.overlap} must be smaller than the tile {self.tile}")


def size_rule(info: dict) -> str:
    """The generalist's statement of the sizes it takes (from ``info()``), for error messages."""
    return str(info.get("size") or "no size rule stated in info()")


class Applier:
    """Runs one generalist with one ``PromptSet`` on images of any size."""

    def __init__(self, generalist, prompts: PromptSet, config: ApplyConfig = ApplyConfig()):
        from .protocol import describe

        self.generalist, self.prompts, self.config = generalist, prompts, config
        self.info = describe(generalist)
        self.device = self.info.get("device") or "cpu"
        multiple = self.info.get("size_multiple")
        if isinstance(multiple, int) and multiple > 1 and config.tile % multiple:
            raise ApplyError(f"{generalist.name} needs sides that are multiples of {multiple} "
                             f"({size_rule(self.info)}); --tile {config.tile} is not: use --tile "
                             f"{max(multiple, config.tile // multiple * multiple)}")
        self._averager = embedding_averager(generalist, self.device) if len(prompts.inputs) > 1 else None
        if len(prompts.inputs) > 1:
            prompts.combine = (f"{len(prompts.inputs)} pairs: prompt embeddings averaged" if self._averager
                               else f"{len(prompts.inputs)} pairs: {generalist.name} cannot average prompt "
                                    "embeddings, so each pair was run and the outputs were averaged")
            log.info("%s", prompts.combine)
        self._prompt_tensors = [(_to_tensor([p_in], self.device), _to_tensor([p_out], self.device))
                                for p_in, p_out in zip(prompts.inputs, prompts.targets)]

    def predict_batch(self, queries: list[np.ndarray]) -> np.ndarray:
        """float32 HWC tiles of one shape -> float32 B×H×W×3 outputs (clamping is left to quantizing)."""
        import torch

        from .protocol import BadOutput, check_output

        batch = _to_tensor(queries, self.device)
        shape = tuple(batch.shape)
        one_per_query = (lambda t: t.expand(shape[0], -1, -1, -1))  # a view: one prompt serves the batch
        try:
            with torch.inference_mode():
                if self._averager is not None:
                    out = self._averager(batch, [p for p, _ in self._prompt_tensors],
                                         [t for _, t in self._prompt_tensors])
                    return check_output(out, shape, self.generalist.name)
                total = None
                for p_in, p_out in self._prompt_tensors:
                    out = self.generalist.predict(batch, one_per_query(p_in), one_per_query(p_out))
                    out = check_output(out, shape, self.generalist.name)
                    total = out if total is None else total + out
                return total / len(self._prompt_tensors)
        except BadOutput:
            raise
        except Exception as err:  # a plug-in may raise anything; name it, its input size and its size rule
            raise ApplyError(f"{self.generalist.name}: predict() raised {type(err).__name__}: {err} on a "
                             f"{shape[2]}×{shape[3]} input (its size rule: {size_rule(self.info)}); if the size "
                             "is the cause, try another --tile or --resize") from err

    def _run_batches(self, items: list[np.ndarray]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        for start in range(0, len(items), self.config.batch):
            outputs.extend(self.predict_batch(items[start:start + self.config.batch]))
        return outputs

    def apply_tiled(self, image: np.ndarray) -> np.ndarray:
        """float32 HWC -> float32 HWC output at full resolution, blended from overlapping tiles."""
        tile, height, width = self.config.tile, image.shape[0], image.shape[1]
        padded = pad_to_tile(image, tile)
        tiles = plan_tiles(padded.shape[0], padded.shape[1], tile, self.config.overlap)
        crops = [padded[t.y:t.y + tile, t.x:t.x + tile] for t in tiles]
        accum = np.zeros(padded.shape, dtype=np.float64)
        weight_sum = np.zeros(padded.shape[:2], dtype=np.float64)
        for t, out in zip(tiles, self._run_batches(crops)):
            accum[t.y:t.y + tile, t.x:t.x + tile] += out * t.weights[:, :, None]
            weight_sum[t.y:t.y + tile, t.x:t.x + tile] += t.weights
        return (accum / weight_sum[:, :, None])[:height, :width].astype(np.float32)

    def apply_resized(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """float32 HWC images -> outputs computed at tile² and resized back (the official scripts)."""
        side = self.config.tile
        small = [resize_float(image, (side, side)) for image in images]
        return [resize_float(out, image.shape[:2]) for image, out in zip(images, self._run_batches(small))]

    def apply(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """uint8/uint16 HWC RGB images -> outputs of the same size and dtype."""
        floats = [to_unit_float(image) for image in images]
        outs = self.apply_resized(floats) if self.config.resize else [self.apply_tiled(f) for f in floats]
        return [from_unit_float(out, image.dtype) for image, out in zip(images, outs)]


# ----------------------------------------------------------------------------- files and folders

@dataclass(frozen=True)
class Job:
    source: Path
    output: Path  # relative to the output folder


def _is_image_name(path: Path) -> bool:
    from taskgen.imageio import IMAGE_SUFFIXES

    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_jobs(inputs: Iterable[str | Path]) -> list[Job]:
    """Files as given, folders recursively (image suffixes only, sorted); each output keeps the name
    relative to its folder (or the file name) with a ``.png`` suffix; clashes get ``-2``, ``-3``...
    A file reached twice (given twice, or also inside a given folder) is processed once, first come."""
    planned: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found_here = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_name(p))
            if not found_here:
                from taskgen.imageio import IMAGE_SUFFIXES

                raise ApplyError(f"no images found in {path} (looked for {', '.join(IMAGE_SUFFIXES)})")
            planned += [(found, found.relative_to(path)) for found in found_here]
        elif path.exists():
            planned.append((path, Path(path.name)))
        else:
            raise ApplyError(f"input {path} does not exist")
    jobs, used, seen = [], Counter(), set()
    for source, relative in planned:
        if source.resolve() in seen:
            continue
        seen.add(source.resolve())
        output = relative.with_suffix(OUTPUT_SUFFIX)
        used[output] += 1
        if used[output] > 1:  # a.jpg next to a.png, or the same name in two input folders
            output = output.with_name(f"{output.stem}-{used[output]}{OUTPUT_SUFFIX}")
        jobs.append(Job(source, output))
    return jobs


@dataclass
class ApplySummary:
    written: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    skipped_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"written": len(self.written), "skipped": sum(self.skipped.values()),
                "skipped_reasons": dict(self.skipped), "skipped_files": self.skipped_files, "notes": self.notes}


def read_prompt_pairs(inputs: Sequence[str | Path], targets: Sequence[str | Path], size: int) -> PromptSet:
    """Prompt files -> ``PromptSet``; the inputs and targets must pair up one to one."""
    from taskgen.imageio import read_image

    if len(inputs) != len(targets):
        raise ApplyError(f"{len(inputs)} --prompt-input but {len(targets)} --prompt-target; give them in pairs")
    pairs = [(read_image(a, keep_16bit=True), read_image(b, keep_16bit=True)) for a, b in zip(inputs, targets)]
    prompt_set = prepare_prompts(pairs, size, [(str(a), str(b)) for a, b in zip(inputs, targets)])
    prompt_set.files = [Path(f) for f in (*inputs, *targets)]
    return prompt_set


# PIL modes (from the header) that taskgen.imageio.read_image turns into RGB with a loss: alpha
# composited on white (8-bit) or dropped (16-bit), one grey channel repeated three times.
_ALPHA_MODES = ("RGBA", "LA", "PA")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L")


def colour_conversions(path: str | Path) -> set[str]:
    """What reading an input does to its colours: a subset of 'alpha' (an 8-bit alpha channel that
    is not fully opaque, composited on white), 'alpha16' (such a 16-bit one, dropped) and 'grey'
    (written as RGB). Empty for plain RGB, for a fully opaque alpha channel (nothing is lost) and
    for files PIL cannot read (skipped elsewhere)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            mode, transparent = img.mode, "transparency" in img.info
            tiff_bits = tuple(getattr(img, "tag_v2", {}).get(258, ()) or ())  # BitsPerSample
            has_alpha = mode in _ALPHA_MODES or (mode == "P" and transparent)
            if has_alpha:  # decode the alpha only where there is one
                alpha = (img.convert("RGBA") if mode == "P" else img).getchannel("A")
                has_alpha = alpha.getextrema()[0] < 255
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return set()
    found = set()
    if has_alpha:
        # PIL reports a 16-bit RGBA PNG as RGBA; its bit depth is the 25th byte of the header.
        with open(path, "rb") as f:
            header = f.read(25)
        sixteen = 16 in tiff_bits or (header[:8] == b"\x89PNG\r\n\x1a\n" and header[24:25] == b"\x10")
        found.add("alpha16" if sixteen else "alpha")
    if mode in _GREY_MODES:
        found.add("grey")
    return found


def colour_note(paths: Iterable[str | Path]) -> str | None:
    """One line counting the inputs whose alpha or grey layout was not kept, or None if none."""
    counts = Counter(kind for path in paths for kind in colour_conversions(path))

    def inputs(kind: str) -> str:
        return "input" if counts[kind] == 1 else "inputs"

    parts = []
    if counts["alpha"]:
        parts.append(f"{counts['alpha']} {inputs('alpha')} had an alpha channel (composited on white, alpha not kept)")
    if counts["alpha16"]:
        parts.append(f"{counts['alpha16']} 16-bit {inputs('alpha16')} had an alpha channel (dropped, not composited)")
    if counts["grey"]:
        parts.append(f"{counts['grey']} grey {inputs('grey')} written as RGB")
    return "; ".join(parts) or None


def check_outputs(jobs: Sequence[Job], out_dir: str | Path, protected: Iterable[str | Path] = ()) -> None:
    """Refuse a run that would write over one of its own input images or prompt images (paths
    compared resolved, so ``--out .`` next to the inputs, symlinks and ``..`` are caught)."""
    sources = {Path(p).resolve(): f"prompt image {p}" for p in protected}
    sources.update({job.source.resolve(): f"input image {job.source}" for job in jobs})
    clashes = []
    for job in jobs:
        target = (Path(out_dir) / job.output).resolve()
        if target in sources:
            clashes.append(f"{Path(out_dir) / job.output} would overwrite the {sources[target]}")
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise ApplyError("refusing to write over the inputs: " + "; ".join(clashes[:3]) + more
                         + "; choose another --out folder")


def apply_to_files(applier: Applier, inputs: Iterable[str | Path], out_dir: str | Path,
                   on_image: Callable[[Job], None] | None = None) -> ApplySummary:
    """Apply to every readable image; unreadable ones are skipped and counted by reason.
    Outputs are PNGs of the input's size and bit depth, written atomically."""
    from taskgen.imageio import UnreadableImage, read_image, write_image_atomic

    out_dir = Path(out_dir)
    summary = ApplySummary(notes=list(applier.prompts.notes))
    if len(applier.prompts.inputs) > 1:
        summary.notes.append(applier.prompts.combine)
    jobs = collect_jobs(inputs)
    check_outputs(jobs, out_dir, applier.prompts.files)  # before anything is written
    # The resize mode batches whole images; the tiled mode batches the tiles of one image.
    group = applier.config.batch if applier.config.resize else 1
    for start in range(0, len(jobs), group):
        readable: list[tuple[Job, np.ndarray]] = []
        for job in jobs[start:start + group]:
            try:
                readable.append((job, read_image(job.source, keep_16bit=True)))
            except UnreadableImage as err:
                reason = err.reason.split(" (")[0]  # "truncated or corrupt (detail)" counts as one reason
                summary.skipped[reason] += 1
                summary.skipped_files.append(str(err))
                log.warning("skipped %s", err)
                if on_image:
                    on_image(job)
        if not readable:
            continue
        try:
            outputs = applier.apply([image for _, image in readable])
        except ValueError as err:  # ApplyError, BadOutput: say which input, and what is already written
            names = ", ".join(str(job.source) for job, _ in readable)
            raise ApplyError(f"{names}: {err} ({len(summary.written)} output(s) already written to "
                             f"{out_dir})") from err
        for (job, _), output in zip(readable, outputs):
            summary.written.append(write_image_atomic(out_dir / job.output, output))
            if on_image:
                on_image(job)
    return summary
