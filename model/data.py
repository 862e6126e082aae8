"""Training stream over the train shards: a prompt pair and a query pair of the same task.

Per the paper (and GenLV's loader), a training sample is four images: prompt input and target,
query input and target, where prompt and query are two *different* samples of the same task cut
from different source images. The task is drawn by weight (uniform by default; GenLV's own mix
with ``task_weights="genlv"``), each pair gets its own random crop, and one of the 8 flips and
rotations is applied to all four images alike.

Epochs, ranks and workers. An epoch is a global plan of ``epoch_length`` entries (task, query,
prompt) drawn from a generator seeded by ``(seed, epoch)``, so every rank computes the same plan.
The plan is padded by wrapping to a multiple of ``world_size`` and dealt round-robin: rank ``r``
gets entries ``r, r + W, ...`` (``ceil(epoch_length / world_size)`` each, so no rank is empty and
all ranks take the same number of steps), and DataLoader worker ``w`` of ``n`` gets every n-th of
those. Splitting happens at entries rather than shard files because a task has only a few shards
and a prompt must come from the task's whole pool; samples are read by random access (``pread``
at offsets taken from the tar headers once, in the main process). The crop and flip of an entry
come from a generator seeded by ``(seed, epoch, entry position)``: the stream is the same whatever
the number of workers and ranks, only its distribution over them changes.

Workers: the dataset object holds paths, offsets and the plan parameters only (no open files, no
images), so it pickles in milliseconds for ``spawn`` start-up (macOS/Windows, or CUDA-safe
loaders); files are opened lazily in each worker. With ``fork`` (Linux default) workers start
faster still; OpenCV's thread pool, which does not survive a fork, is shrunk to one thread around
every fork of a process that imported this module. Each worker runs OpenCV and torch single-threaded,
and exits when the process that iterates the loader ends, even if that one was killed (``exit_with``).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import select
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from taskgen.shards import (ShardError, check_members, check_shard_file, decode_member_png, decode_meta,
                            index_shard, load_manifest, source_image_id)

log = logging.getLogger(__name__)

# GenLV's own task mix (30-task setting of the official release: conference_version/dataset/
# lowlevel_prompt_update_dataloader.py, tasks_flag=2), mapped to our task names, in 1/1280 units.
# Its "Base" set (6/32) is split 1/2 mixed degradations, 1/4 one of ten single degradations (on the
# fly), 1/4 Canny or Laplacian; every other dataset gets 1/32, SDR<->HDR 2/32 shared by both
# directions, the six AdaAttN styles 2/32 each. Low-light gets LOL's 1/32 plus its on-the-fly share.
GENLV_TASK_MIX: dict[str, float] = {
    "mixed": 120,
    **{name: 6 for name in ("gaussian_noise", "poisson_noise", "salt_pepper", "gaussian_blur", "jpeg",
                            "ringing", "rl", "inpainting", "rain_simple")},
    "low_light": 46,
    "canny": 30, "laplacian": 30,
    **{name: 40 for name in ("haze", "rain_complex", "retouch", "local_laplacian", "tone_multiscale",
                             "underwater_contrast", "underwater_color", "sdr_to_hdr", "hdr_to_sdr",
                             "perceptual_edges", "pencil", "photographic", "rtv")},
    **{name: 80 for name in ("vermeer", "jojo", "raphael", "fauvism", "divisionism", "cloisonnism")},
}
_PLAN_STREAM = 0x504C414E  # "PLAN": keeps the epoch-plan generator apart from the augmentation ones
_AUG_STREAM = 0x41554721   # "AUG!"
_IDENTITY_STREAM = 0x49444E54  # "IDNT": identity draws never shift the plan or the crops
IDENTITY_TASK = "identity"


@dataclass(frozen=True)
class SampleRef:
    """Where one train sample's members live, and which source image it was cut from."""

    shard: int                   # index into TrainStream.shard_paths
    key: str
    input: tuple[int, int]       # (offset, size) of input.png inside the tar
    target: tuple[int, int]
    image: str                   # source image id (prompt and query must differ in it)


def resolve_task_weights(tasks: list[str], weights) -> dict[str, float]:
    """``None``/"uniform", "genlv" or ``{task: weight}`` -> normalised weights of the tasks kept."""
    if weights is None or weights == "uniform":
        raw = {t: 1.0 for t in tasks}
    elif weights == "genlv":
        missing = [t for t in tasks if t not in GENLV_TASK_MIX]
        if missing:
            raise ValueError(f"GenLV's mix has no weight for {', '.join(missing)}; pass a dict of weights instead")
        raw = {t: float(GENLV_TASK_MIX[t]) for t in tasks}
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"task weights name tasks without train samples: {', '.join(unknown)}")
        raw = {t: float(weights.get(t, 0.0)) for t in tasks}
    else:
        raise ValueError(f"task_weights must be None, 'uniform', 'genlv' or a dict, got {weights!r}")
    if any(w < 0 for w in raw.values()):
        raise ValueError("task weights must be >= 0")
    kept = {t: w for t, w in raw.items() if w > 0}
    total = sum(kept.values())
    if not kept or total <= 0:
        raise ValueError("all task weights are zero")
    return {t: w / total for t, w in kept.items()}


def _read_span(fd: int, span: tuple[int, int]) -> bytes:
    offset, size = span
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: no pread; each worker has its own descriptors
    return os.read(fd, size)


def dihedral(image: np.ndarray, op: int) -> np.ndarray:
    """One of the 8 flips/rotations of an HWC array (a view): op % 4 quarter turns, then a
    horizontal flip when op >= 4."""
    out = np.rot90(image, k=op % 4, axes=(0, 1))
    return out[:, ::-1] if op >= 4 else out


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """uint8 (/255) or uint16 (/65535) RGB HWC -> float32 tensor 3xHxW in [0, 1]."""
    scale = np.float32(1.0 / 65535.0) if image.dtype == np.uint16 else np.float32(1.0 / 255.0)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    chw *= scale
    return torch.from_numpy(chw)


def to_chw_int(image: np.ndarray) -> torch.Tensor:
    """uint8/uint16 RGB HWC -> integer tensor 3xHxW of the same dtype (compact for worker transport)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


IMAGE_KEYS = ("prompt_input", "prompt_target", "query", "target")


def collate_integer(samples: list[dict]) -> dict:
    """Collate raw samples into integer batches: uint8 when every image of a key is 8-bit, else
    uint16 with 8-bit images scaled by 257 (exact: v/255 == 257v/65535)."""
    batch = {}
    for key in IMAGE_KEYS:
        images = [s[key] for s in samples]
        if any(img.dtype == torch.uint16 for img in images):
            images = [img.to(torch.uint16) * 257 if img.dtype == torch.uint8 else img for img in images]
        batch[key] = torch.stack(images)
    for key in samples[0]:
        if key not in IMAGE_KEYS:
            batch[key] = [s[key] for s in samples]
    return batch


def batch_to_float(batch: dict, device=None) -> dict:
    """Integer batch -> float32 in [0, 1] (uint8 / 255, uint16 / 65535), on ``device`` if given
    (move first: integers are 4x smaller to transfer)."""
    out = dict(batch)
    for key in IMAGE_KEYS:
        images = batch[key].to(device) if device is not None else batch[key]
        scale = 1.0 / 65535.0 if images.dtype == torch.uint16 else 1.0 / 255.0
        out[key] = images.to(torch.float32).mul_(scale)
    return out


class TrainStream(IterableDataset):
    """Training samples ``{"prompt_input", "prompt_target", "query", "target", "task", "key",
    "prompt_key"}`` (float32 3xHxW in [0, 1]) from the train shards of ``shards_dir``.

    ``size``: crop size (at most the stored size). ``task_weights``: None/"uniform", "genlv" or a
    dict. ``epoch_length``: entries per epoch over all ranks (default: the number of train
    samples). ``epochs``: passes per iteration; None (default) streams epoch after epoch without
    end, for step-based training; ``set_epoch`` sets the first epoch. ``raw=True`` yields the
    images as integer tensors (uint8, or uint16 for HDR sides) for ``collate_integer``.
    ``identity_rate``: the fraction of entries turned into identity samples (task ``"identity"``):
    the drawn prompt and query *inputs* stand for both sides, prompt (x, x) and query q -> q. Not
    in the paper: it trains the fidelity of images a prompt says to leave alone (0 = off, and then
    the stream is exactly the one without this option).
    """

    def __init__(self, shards_dir: str | Path, size: int, task_weights=None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, epoch_length: int | None = None, epochs: int | None = None,
                 augment: bool = True, raw: bool = False, identity_rate: float = 0.0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if not 0.0 <= float(identity_rate) < 1.0:
            raise ValueError(f"identity_rate must be in [0, 1), got {identity_rate!r}")
        self.identity_rate = float(identity_rate)
        self.root = Path(shards_dir)
        self.size, self.seed, self.rank, self.world_size = int(size), int(seed), int(rank), int(world_size)
        self.epochs, self.augment, self.raw, self.epoch = epochs, augment, raw, 0
        manifest = load_manifest(self.root)
        self.stored_size = int(manifest["params"]["size"])  # load_manifest checked it
        if self.size > self.stored_size:
            raise ValueError(f"crop size {self.size} is larger than the stored images ({self.stored_size} px) in "
                             f"{self.root}; synthesise with --size {self.size} or crop smaller")
        info = manifest["tasks"]
        present = sorted({e["task"] for e in manifest["shards"] if e["split"] == "train"
                          and info[e["task"]].get("in_training_mix", True)}, key=lambda t: (info[t]["index"], t))
        if not present:
            raise ValueError(f"{self.root} holds no train samples of a training task")
        self.weights = resolve_task_weights(present, task_weights)
        self.tasks = list(self.weights)
        self.shard_paths: list[str] = []
        self.refs: dict[str, list[SampleRef]] = {t: [] for t in self.tasks}
        for entry in manifest["shards"]:
            if entry["split"] == "train" and entry["task"] in self.refs:
                self._index(entry)
        self._groups = {t: self._source_groups(t) for t in self.tasks}
        self.every_sample_once = sum(len(r) for r in self.refs.values())
        self.epoch_length = int(epoch_length) if epoch_length else self.every_sample_once
        self._fds: dict[int, int] | None = None  # opened lazily in the process that reads
        self._fds_pid = 0

    # -- index ---------------------------------------------------------------------------
    def _index(self, entry: dict) -> None:
        """Record the samples of one train shard; ShardError names a shard whose byte size differs from
        the manifest (no hashing: train shards can be GBs), that is not a readable tar, or that holds a
        sample of another task or split, or one without its three members or a readable json member."""
        path = check_shard_file(self.root, entry, verify_hash=False)
        hint = f"run llvbench verify {self.root}"
        shard = len(self.shard_paths)
        self.shard_paths.append(str(path))
        members = index_shard(path)
        prefix = f"{entry['task']}/train/"
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            for key in sorted(members):
                fields = members[key]
                if not key.startswith(prefix) or key.count("/") != 2:
                    raise ShardError(f"{path}: sample {key} is not a {entry['task']} train sample, as the manifest "
                                     f"lists this shard ({hint})")
                check_members(path, key, fields)
                meta = decode_meta(path, key, _read_span(fd, (fields["json"].offset, fields["json"].size)))
                if not isinstance(meta.get("source_id"), str):
                    raise ShardError(f"{path}: sample {key}: the json member has no source_id ({hint})")
                self.refs[entry["task"]].append(SampleRef(
                    shard, key, (fields["input.png"].offset, fields["input.png"].size),
                    (fields["target.png"].offset, fields["target.png"].size),
                    source_image_id(meta["source_id"], key)))
        finally:
            os.close(fd)

    def _source_groups(self, task: str) -> tuple[np.ndarray, list[np.ndarray]]:
        """Prompt index of ``task``: each sample's source image (int32), and per image ``G[k] - k`` for
        its sorted positions ``G`` (the samples of other images before its k-th one). O(samples): one
        array per sample grew as samples²/images and was pickled into every worker."""
        refs = self.refs[task]
        if len(refs) < 2:
            raise ValueError(f"task {task} has {len(refs)} train sample(s) in {self.root}; a prompt needs another")
        by_image: dict[str, list[int]] = {}
        for pos, ref in enumerate(refs):
            by_image.setdefault(ref.image, []).append(pos)
        if len(by_image) == 1:
            log.warning("task %s: all %d train samples come from one source image; prompts are other crops of it",
                        task, len(refs))
        image_of = np.empty(len(refs), dtype=np.int32)
        others_before = []
        for image, positions in enumerate(by_image.values()):
            image_of[positions] = image
            others_before.append(np.asarray(positions, dtype=np.int32) - np.arange(len(positions), dtype=np.int32))
        return image_of, others_before

    # -- plan ------------------------------------------------------------------------------
    @property
    def epoch_size(self) -> int:
        """Entries per epoch on this rank (the same on every rank)."""
        return math.ceil(self.epoch_length / self.world_size)

    def __len__(self) -> int:
        if self.epochs is None:
            raise TypeError("an endless TrainStream (epochs=None) has no length; see .epoch_size")
        return self.epoch_size * self.epochs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def check_workers(self, workers: int) -> None:
        """ValueError unless every one of ``workers`` DataLoader workers gets entries: an endless stream
        whose worker has an empty share plans epoch after epoch without yielding, so training hangs."""
        if self.epochs is None and workers > self.epoch_size:
            raise ValueError(f"this rank gets {self.epoch_size} entries per epoch (epoch_length {self.epoch_length} "
                             f"over {self.world_size} rank(s)) but the loader has {workers} workers: an endless "
                             f"stream would hang in the workers without entries; use at most {self.epoch_size} "
                             f"workers or a larger epoch_length")

    def epoch_plan(self, epoch: int) -> np.ndarray:
        """Global plan of an epoch: rows (task index, query position, prompt position)."""
        rng = np.random.default_rng([self.seed, epoch, _PLAN_STREAM])
        n_tasks = len(self.tasks)
        task_ids = rng.choice(n_tasks, size=self.epoch_length, p=list(self.weights.values()))
        plan = np.zeros((self.epoch_length, 3), dtype=np.int64)
        plan[:, 0] = task_ids
        for t, task in enumerate(self.tasks):
            rows = np.flatnonzero(task_ids == t)
            if rows.size == 0:
                continue
            n = len(self.refs[task])
            # Queries walk through shuffled passes over the pool: every sample before any repeats.
            queries = np.concatenate([rng.permutation(n) for _ in range(math.ceil(rows.size / n))])[:rows.size]
            plan[rows, 1] = queries
            plan[rows, 2] = [self._prompt_for(task, int(q), rng) for q in queries]
        return plan

    def _prompt_for(self, task: str, query: int, rng: np.random.Generator) -> int:
        """Uniform among the samples cut from another image (other crops if there is none)."""
        n = len(self.refs[task])
        image_of, others_before = self._groups[task]
        before = others_before[image_of[query]]
        if before.size == n:  # a single source image: any other sample
            pick = int(rng.integers(0, n - 1))
            return pick + (pick >= query)
        pick = int(rng.integers(0, n - before.size))
        # The pick-th position not in the group: pick plus the members with at most pick others before them.
        return pick + int(np.searchsorted(before, pick, side="right"))

    def _my_entries(self, epoch: int) -> Iterator[tuple[int, np.ndarray]]:
        """(global position, row) of this rank's and this worker's share of an epoch."""
        plan = self.epoch_plan(epoch)
        per_rank = self.epoch_size
        positions = np.arange(self.rank, per_rank * self.world_size, self.world_size)
        worker = get_worker_info()
        if worker is not None:
            positions = positions[worker.id::worker.num_workers]
        for pos in positions:
            yield int(pos), plan[pos % self.epoch_length]  # wrap-around padding

    # -- samples ---------------------------------------------------------------------------
    def _fd(self, shard: int) -> int:
        if self._fds is None or self._fds_pid != os.getpid():  # descriptors are per process
            self._fds, self._fds_pid = {}, os.getpid()
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shard_paths[shard], os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._fds[shard]

    def _read_pair(self, ref: SampleRef) -> tuple[np.ndarray, np.ndarray]:
        """Decoded (input, target) of a sample: RGB, of one size, at least the crop size; ShardError
        names the shard and the sample otherwise (not a numpy error from the crop or the transpose)."""
        fd, path = self._fd(ref.shard), self.shard_paths[ref.shard]
        pair = (decode_member_png(path, ref.key, "input.png", _read_span(fd, ref.input)),
                decode_member_png(path, ref.key, "target.png", _read_span(fd, ref.target)))
        for name, image in zip(("input.png", "target.png"), pair):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ShardError(f"{path}: sample {ref.key}: {name} has shape {image.shape}, not height x width x 3 "
                                 f"(RGB)")
        (h, w), (th, tw) = pair[0].shape[:2], pair[1].shape[:2]
        if (h, w) != (th, tw):
            raise ShardError(f"{path}: sample {ref.key}: input.png is {w}x{h} px but target.png is {tw}x{th} px")
        if min(h, w) < self.size:
            raise ShardError(f"{path}: sample {ref.key}: the images are {w}x{h} px, smaller than the crop size "
                             f"{self.size}")
        return pair

    def _crop(self, pair: tuple[np.ndarray, np.ndarray], rng: np.random.Generator):
        h, w = pair[0].shape[:2]
        c = self.size
        y, x = (int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))) if self.augment else \
            ((h - c) // 2, (w - c) // 2)
        return tuple(img[y:y + c, x:x + c] for img in pair)

    def is_identity(self, epoch: int, position: int) -> bool:
        """Whether the entry at ``position`` of ``epoch`` is an identity sample (``identity_rate``)."""
        if self.identity_rate == 0.0:
            return False
        return bool(np.random.default_rng([self.seed, epoch, _IDENTITY_STREAM, position]).random()
                    < self.identity_rate)

    def make_sample(self, epoch: int, position: int, row: np.ndarray) -> dict:
        """Materialise one plan entry (reads, decodes, crops, flips, converts)."""
        task = self.tasks[int(row[0])]
        query_ref, prompt_ref = self.refs[task][int(row[1])], self.refs[task][int(row[2])]
        rng = np.random.default_rng([self.seed, epoch, _AUG_STREAM, position])
        prompt = self._crop(self._read_pair(prompt_ref), rng)
        query = self._crop(self._read_pair(query_ref), rng)
        if self.is_identity(epoch, position):
            task, prompt, query = IDENTITY_TASK, (prompt[0], prompt[0]), (query[0], query[0])
        op = int(rng.integers(0, 8)) if self.augment else 0
        images = [dihedral(img, op) for img in (*prompt, *query)]
        tensors = [to_chw_int(img) if self.raw else to_chw_float(img) for img in images]
        return {"prompt_input": tensors[0], "prompt_target": tensors[1], "query": tensors[2],
                "target": tensors[3], "task": task, "key": query_ref.key, "prompt_key": prompt_ref.key}

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        self.check_workers(worker.num_workers if worker is not None else 1)
        epoch = self.epoch
        while self.epochs is None or epoch < self.epoch + self.epochs:
            for position, row in self._my_entries(epoch):
                yield self.make_sample(epoch, position, row)
            epoch += 1

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"] = None  # descriptors never cross process boundaries
        return state

    def __del__(self):
        if getattr(self, "_fds", None) and self._fds_pid == os.getpid():
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass


_FORK_STATE: dict[str, int] = {}


def _cv2_pool_off_before_fork() -> None:
    # OpenCV's thread pool does not survive fork(): a child that inherits a started pool hangs in
    # its first parallel call (cvtColor, setNumThreads ...). Shrinking the pool to one thread just
    # before the fork joins its threads; the parent gets its setting back right after.
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        _FORK_STATE["threads"] = cv2.getNumThreads()
        cv2.setNumThreads(1)


def _cv2_pool_back_after_fork() -> None:
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and "threads" in _FORK_STATE:
        cv2.setNumThreads(_FORK_STATE.pop("threads"))


if hasattr(os, "register_at_fork"):  # forked DataLoader workers (Linux default start method)
    os.register_at_fork(before=_cv2_pool_off_before_fork, after_in_parent=_cv2_pool_back_after_fork,
                        after_in_child=_FORK_STATE.clear)


def wait_for_exit(pid: int, poll_s: float = 1.0) -> None:
    """Block until process ``pid`` has ended (at once if it is gone already).

    Linux >= 5.3: a pidfd, readable when the process exits (no polling, immune to pid reuse once
    opened). Elsewhere: ``kill(pid, 0)`` every ``poll_s`` seconds.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd_open (not Linux, or an older kernel)
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        return
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # alive, owned by someone else (the pid was reused): keep waiting
            pass
        time.sleep(poll_s)


def exit_with(pid: int) -> threading.Thread:
    """End this process as soon as process ``pid`` ends (a daemon thread that waits for it).

    Why: under the fork server a DataLoader worker's parent is the server, not the trainer, so
    torch's own check (is my parent alive?) never fires when the trainer is killed; the worker
    holds the server's and the resource tracker's pipes open, so all three outlived a killed
    trainer. Once the worker exits, the server and the tracker see their pipes close and exit too.
    """
    def watch() -> None:
        wait_for_exit(pid)
        os._exit(1)  # no clean-up: the process that would consume our batches is gone

    thread = threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True)
    thread.start()
    return thread


def init_worker(_worker_id: int, trainer_pid: int | None = None) -> None:
    """DataLoader worker set-up: one thread each for OpenCV and torch (workers are the parallelism),
    and, given ``trainer_pid`` (the process that iterates the loader), exit when that process does."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if trainer_pid is not None:
        exit_with(trainer_pid)


def worker_init_for_this_process():
    """``worker_init_fn`` for a loader iterated by this process: ``init_worker`` bound to its pid
    (a partial of a module function: it pickles for the fork server and spawn)."""
    return functools.partial(init_worker, trainer_pid=os.getpid())


class TrainLoader(DataLoader):
    """A DataLoader whose workers ship integer batches (4x fewer bytes between processes than
    float32) that are turned into float32 [0, 1] batches here, in the consuming process."""

    def __init__(self, *args, convert: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.convert = convert

    def __iter__(self):
        batches = super().__iter__()
        return (batch_to_float(b) for b in batches) if self.convert else batches


def make_loader(shards_dir: str | Path, batch_size: int, size: int, workers: int = 0, seed: int = 0,
                rank: int = 0, world_size: int = 1, *, task_weights=None, epochs: int | None = None,
                epoch_length: int | None = None, multiprocessing_context=None, pin_memory: bool = False,
                convert: bool = True) -> DataLoader:
    """A DataLoader of dicts with float32 B x 3 x H x W batches in [0, 1] (``prompt_input``,
    ``prompt_target``, ``query``, ``target``) plus lists ``task``, ``key`` and ``prompt_key``.

    Endless by default (``epochs=None``): iterate it for the number of training steps. With
    ``epochs=K`` it stops after K epochs of ``ceil(epoch_length / world_size)`` samples per rank.
    ``convert=False`` leaves the integer batches for ``batch_to_float(batch, device)`` on the GPU.
    """
    stream = TrainStream(shards_dir, size, task_weights=task_weights, seed=seed, rank=rank,
                         world_size=world_size, epoch_length=epoch_length, epochs=epochs, raw=True)
    stream.check_workers(workers)  # before any worker starts: theirs would only come with the first batch
    return TrainLoader(stream, batch_size=batch_size, num_workers=workers, collate_fn=collate_integer,
                       worker_init_fn=worker_init_for_this_process() if workers else None,
                       pin_memory=pin_memory,
                       multiprocessing_context=multiprocessing_context if workers else None,
                       persistent_workers=False, convert=convert)
