"""One (input, target) sample from (task, split, index, seed, size, source) — reproducible alone."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import check_rgb
from .registry import TaskSpec, sample_rng
from .paired import PairedSource
from .sources import Source

GENERATOR_VERSION = "1"  # bump when any recipe changes its output for the same seed


class TaskFailure(RuntimeError):
    """A task function raised or broke the image contract; names everything needed to rerun it."""


@dataclass(frozen=True)
class Sample:
    key: str
    task: str
    split: str
    index: int
    input: np.ndarray
    target: np.ndarray
    params: dict
    source_id: str
    clean: np.ndarray  # the source image the pair was made from (for previews; not stored in shards)


def sample_key(task: str, split: str, index: int) -> str:
    return f"{task}/{split}/{index:06d}"


def _check_output(spec: TaskSpec, side: str, arr) -> None:
    allowed = (np.uint16,) if spec.hdr == side else (np.uint8,)
    check_rgb(arr, f"task {spec.name} {side}", dtypes=allowed)


def _global_numpy_rng_state() -> tuple[int, bytes]:
    """Where numpy's legacy global generator stands (np.random.*): a draw from it moves this."""
    state = np.random.get_state(legacy=False)["state"]
    return state["pos"], state["key"].tobytes()


def check_task_output(spec: TaskSpec, source_image: np.ndarray, inp, tgt, params) -> None:
    """Raise ValueError naming the first way a task's (input, target, params) breaks its contract."""
    _check_output(spec, "input", inp)
    _check_output(spec, "target", tgt)
    if inp.shape != tgt.shape or inp.shape[:2] != source_image.shape[:2]:
        raise ValueError(f"shapes differ: source {source_image.shape}, input {inp.shape}, target {tgt.shape}")
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict, got {type(params).__name__}")


def run_task(spec: TaskSpec, image: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None):
    """``spec.generate`` with the checks synth and preview share: no draw from numpy's global
    generator, and outputs that keep the task contract. Returns (input, target, params)."""
    before = _global_numpy_rng_state()
    inp, tgt, params = spec.generate(image, rng, depth=depth)
    if _global_numpy_rng_state() != before:  # such shards would differ run to run
        raise ValueError("drew from numpy's global random generator (np.random.*); draw every random "
                         "value from the rng argument, or the shards are not reproducible")
    check_task_output(spec, image, inp, tgt, params)
    return inp, tgt, params


def make_sample(spec: TaskSpec, split: str, index: int, *, seed: int, size: int, source: Source,
                paired: PairedSource | None = None) -> Sample:
    """Draw the source image then apply the task, both from the sample's own generator.

    With ``paired`` (a real dataset for this task and split) the pair is read from it instead and
    the synthetic recipe is not run; ``params`` then names the dataset.
    """
    rng = sample_rng(seed, spec.name, split, index)
    if paired is not None:
        return _paired_sample(spec, split, index, seed, size, paired, rng)
    where = f"task={spec.name} split={split} index={index} seed={seed} size={size} source={source.name}"
    try:
        src = source.sample(index, size, rng)
    except Exception as err:
        raise TaskFailure(f"source failed for {where}: {type(err).__name__}: {err}") from err
    try:
        inp, tgt, params = run_task(spec, src.image, rng, depth=src.depth)
    except Exception as err:
        raise TaskFailure(f"task failed for {where}: {type(err).__name__}: {err}") from err
    return Sample(sample_key(spec.name, split, index), spec.name, split, index, inp, tgt,
                  params, src.source_id, src.image)


def _paired_sample(spec: TaskSpec, split: str, index: int, seed: int, size: int, paired: PairedSource,
                   rng: np.random.Generator) -> Sample:
    where = f"task={spec.name} split={split} index={index} seed={seed} size={size} paired={paired.name}"
    try:
        pair = paired.sample(index, size, rng)
        _check_output(spec, "input", pair.input)
        _check_output(spec, "target", pair.target)
    except Exception as err:
        raise TaskFailure(f"paired dataset failed for {where}: {type(err).__name__}: {err}") from err
    clean = pair.input if pair.input.dtype == np.uint8 else pair.target
    return Sample(sample_key(spec.name, split, index), spec.name, split, index, pair.input, pair.target,
                  {"paired_dataset": paired.name}, pair.source_id, clean)
