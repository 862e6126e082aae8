"""The GenLV training loop as a library: ``train(TrainConfig(...)) -> summary dict``.

Recipe (paper §4.1 "Implement details", where it is silent the official training script
``extended_version/001_main_train_GenLV100_from_scratch.py``):

* L1 loss between the network's output for the query and the query's target — the objective of
  GenLV, PromptIR and anything else; PromptGIP and Painter train with their authors' masked losses
  (``model.objectives``, chosen by the network class's ``training_objective``), their masks drawn
  from a generator reseeded from (seed, step, rank) so that ``--resume`` redraws the same ones;
* networks with a fixed input size (PromptGIP's ``img_size``, Painter's canvas) are built for the
  crop ``size`` of the run; config.json records those overrides so that the bench rebuilds them;
* AdamW, β = (0.9, 0.99) and peak learning rate 1e-4 as the paper states (the official script
  passes β2 = 0.95); weight decay 0.05 on weights with two or more dimensions, none on biases and
  norm scales (the official script's rule);
* per-step schedule: linear warm-up, then a half cosine that would reach ``min_lr`` one update past
  the last (the last update's rate is within (lr - min_lr)·π²/(4·(steps - warmup)²) of it);
* gradient-norm clipping (the official script has none; 1.0 by default here, 0 turns it off);
* bf16 autocast on CUDA (fp32 on CPU), optional ``torch.compile``, optional EMA of the weights;
* DDP when launched by ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK): NCCL on CUDA, gloo on CPU.
  ``batch`` is the global batch, split evenly over the ranks.

Data come from the train shards through :class:`model.data.TrainStream`. Batch ``j`` of a rank
holds that rank's stream entries ``[j·b, (j+1)·b)``; DataLoader workers take every W-th batch, so
the order of batches depends neither on the worker count nor on where a run was resumed, and the
global batch of a step is the same for any world size that divides the epoch evenly.

Checkpoint folder (``out``)::

    config.json          {"arch", "overrides", "name", "weights", "step", ...}: what bench reads
    model.safetensors    eval weights (the EMA when on), metadata from model.checkpoints.save_model
    metrics.csv          step, loss, lr, samples_per_s, elapsed, grad_norm (for `dvc plots`)
    summary.json         how the run ended, throughput, per-rank data accounting
    state/               everything --resume needs, swapped in as a whole:
        weights.safetensors   training weights
        ema.safetensors       EMA weights (only with EMA)
        optimizer.pt          optimizer state dict (tensors and numbers: loads with weights_only=True)
        trainer.json          step, schedule, samples seen, elapsed time, the loss history (first loss,
                              last 10, the open metrics window), the run's settings

The state folder is written to a temporary folder and renamed into place, so a crash leaves either
the previous or the new checkpoint. A non-finite loss or gradient norm stops the run before the
optimizer step, names the step, and leaves the last checkpoint untouched.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from taskgen.atomic import atomic_path, atomic_write_json

from . import objectives, registry
from .checkpoints import read_safetensors, save_model, write_safetensors

log = logging.getLogger(__name__)

STATE_DIR = "state"
WEIGHTS_NAME = "model.safetensors"          # bench.checkpoint reads these two names
CONFIG_NAME = "config.json"
METRICS_COLUMNS = ("step", "loss", "lr", "samples_per_s", "elapsed", "grad_norm")
# Settings that decide the data order and the loss curve: a resumed run must keep them.
RUN_IDENTITY = ("arch", "overrides", "batch", "size", "seed", "task_weights", "epoch_length", "identity_rate")


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the run stopped before updating the weights."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class TrainStateError(RuntimeError):
    """The output folder holds a run that cannot be continued (or must not be overwritten)."""


# ----------------------------------------------------------------------------- configuration

@dataclass
class TrainConfig:
    """Every setting of a training run (params.yaml's ``train`` section uses these names)."""

    arch: str = "genlv-tiny"
    overrides: dict = field(default_factory=dict)   # model.build overrides of the arch config
    shards: str = "data/shards"
    out: str = "checkpoints/genlv-tiny"
    steps: int = 1000                # optimizer updates of the whole schedule
    batch: int = 8                   # global batch (all ranks together)
    size: int = 64                   # crop size of prompt and query (a multiple of 32 for GenLV)
    lr: float = 1e-4                 # peak learning rate (paper)
    min_lr: float = 0.0              # the cosine's floor, reached one update past the last
    warmup: int = 100                # linear warm-up updates
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.99)       # paper
    grad_clip: float = 1.0           # max global gradient norm; 0 = no clipping
    ema: float = 0.0                 # EMA decay (e.g. 0.999); 0 = no EMA
    bf16: bool = True                # bf16 autocast (CUDA only; CPU always trains in fp32)
    compile: Any = ""                # torch.compile: "" (off), "regional" (each repeated block), "full"
    channels_last: bool = False      # NHWC weights and inputs (cuDNN's fast bf16 convolution layout)
    checkpointing: Any = ""          # activation checkpointing: "" (off), "sublayer" (~1/3 more compute),
                                     # "block" (least memory, ~2/3 more compute); True = "sublayer"
    device: str = "auto"             # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    workers: int = 0                 # DataLoader worker processes per rank
    seed: int = 0                    # weight init and data order
    task_weights: Any = None         # None/"uniform", "genlv" or {task: weight} (model.data)
    epoch_length: int | None = None  # samples per epoch over all ranks; None: every train sample once
    identity_rate: float = 0.0       # fraction of samples made identity pairs (model.data; not the paper's)
    log_every: int = 10              # metrics.csv row every N steps (mean loss of the window)
    ckpt_every: int = 500            # checkpoint every N steps (and at the end)
    stop_at: int | None = None       # stop after this step (the schedule still spans `steps`)
    max_minutes: float | None = None  # wall-clock budget of this process: stop (resumable) when spent
    init: str = ""                   # weights to start a new run from: a checkpoint folder or .safetensors
    resume: bool = False             # continue the run in `out`
    threads: int | None = None       # torch intra-op threads; None: torch's default
    metrics: str | None = None       # CSV path; None: OUT/metrics.csv
    summary: str | None = None       # JSON path; None: OUT/summary.json
    name: str = ""                   # label in config.json; "" = the out folder's name

    def __post_init__(self):
        try:
            self.betas = tuple(float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be two numbers in [0, 1) (AdamW's), got {self.betas!r}") from None
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1) (AdamW's), got {self.betas!r}")
        self.overrides = dict(self.overrides or {})
        self.compile = compile_mode(self.compile)
        self.checkpointing = checkpointing_level(self.checkpointing)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, JSON-safe

    def validate(self) -> None:
        problems = []
        for name in ("steps", "batch", "size", "log_every", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.warmup < 0 or self.workers < 0:
            problems.append("warmup and workers must be >= 0")
        if self.seed < 0:  # numpy's generators take non-negative seeds only
            problems.append(f"seed must be >= 0, got {self.seed}")
        # NaN passes every comparison below (a NaN grad_clip would write NaN weights unnoticed).
        not_finite = [name for name in ("lr", "min_lr", "grad_clip", "weight_decay", "ema", "identity_rate",
                                        "warmup", "max_minutes")
                      if getattr(self, name) is not None and not math.isfinite(float(getattr(self, name)))]
        if not_finite:
            problems.append("must be finite numbers: " + ", ".join(f"{n} ({getattr(self, n)})" for n in not_finite))
        out = Path(self.out)
        if (blocking := file_in_the_way(out)) is not None:
            problems.append(f"--out {out}: {blocking} is a file, not a folder")
        # Checked now: the summary is first written in train's `finally`, where a bad path would
        # surface only after the run, in place of its own outcome (an interruption, a NaN loss).
        for option, path in (("--metrics", self.metrics_path), ("--summary", self.summary_path)):
            if path.is_dir():
                problems.append(f"{option} {path} is a folder; give the file to write")
            elif (blocking := file_in_the_way(path.parent)) is not None:
                problems.append(f"{option} {path}: {blocking} is a file, not a folder")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"ema is a decay in [0, 1) (0 = off), got {self.ema}")
        if not 0.0 <= self.identity_rate < 1.0:
            problems.append(f"identity_rate is a fraction in [0, 1) (0 = off), got {self.identity_rate}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            problems.append(f"need 0 <= min_lr <= lr and lr > 0 (got lr {self.lr}, min_lr {self.min_lr})")
        if self.grad_clip < 0:
            problems.append(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 (leave it out for torch's default), got {self.threads}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.epoch_length is not None and self.epoch_length < 1:
            problems.append(f"epoch_length must be >= 1 (leave it out for every train sample once), "
                            f"got {self.epoch_length}")
        if isinstance(self.task_weights, dict):
            bad = {task: w for task, w in self.task_weights.items() if isinstance(w, bool)
                   or not isinstance(w, (int, float)) or not 0 <= w < math.inf}
            if bad:
                problems.append("task_weights must map tasks to numbers >= 0, got " +
                                ", ".join(f"{task}: {w!r}" for task, w in bad.items()))
        if self.stop_at is not None and self.stop_at < 1:
            problems.append(f"stop_at must be >= 1, got {self.stop_at}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.init:
            problems += init_problems(self.init)
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics) if self.metrics else Path(self.out) / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return Path(self.summary) if self.summary else Path(self.out) / "summary.json"


def file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing path at or above ``folder`` when it is a file, which would stop the folder
    being made (None when it is a folder, or nothing there exists yet)."""
    for part in (folder, *folder.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def init_weights_path(init: str | os.PathLike) -> Path:
    """``--init``: a checkpoint folder (its eval weights) or a weights file itself."""
    path = Path(init)
    return path / WEIGHTS_NAME if path.is_dir() else path


def init_problems(init: str | os.PathLike) -> list[str]:
    """What is wrong with ``--init`` (nothing: []): no weights there, or a file that is not weights
    (a config.json or other text, which torch.load would call a refused pickle)."""
    path = init_weights_path(init)
    expected = f"a checkpoint folder with {WEIGHTS_NAME}, or a .safetensors file"
    if not path.is_file():
        return [f"init: no weights at {init} ({expected})"]
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    if path.suffix != ".safetensors" and (path.suffix in (".json", ".yaml", ".yml", ".csv", ".txt", ".md")
                                          or head[:1] in (b"{", b"[")):
        return [f"init: {init} is a text file, not weights; expected {expected}"]
    return []


def load_init_weights(net: nn.Module, init: str | os.PathLike) -> str:
    """Strictly load ``init``'s weights into ``net`` (any float dtype, cast); returns their sha256."""
    from .checkpoints import load_weights, read_state_dict

    path = init_weights_path(init)
    state = read_state_dict(path)
    try:
        load_weights(net, state)
    except ValueError as err:
        raise ValueError(f"--init {init}: {err}") from None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warn_if_init_overrides_differ(init: str | os.PathLike, overrides: dict) -> None:
    """Log a warning when ``--init`` is a checkpoint folder whose network overrides (its config.json)
    differ from this run's: the weights then serve another function (e.g. an ``input_offset``),
    which is right for a deliberate change and silently wrong when the override was forgotten."""
    path = Path(init) / CONFIG_NAME
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text()).get("overrides") or {}
    except (OSError, ValueError, AttributeError):
        return
    if json.dumps(before, sort_keys=True) != json.dumps(overrides, sort_keys=True):
        log.warning("--init %s carries the network overrides %s (its config.json), this run builds the network "
                    "with %s; pass the same --override to continue the same function", init, json.dumps(before),
                    json.dumps(overrides))


# ----------------------------------------------------------------------------- schedule, optimizer, EMA

def learning_rate(step: int, *, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up to ``peak`` over ``warmup``
    updates, then a half cosine from ``peak`` that reaches ``floor`` at update ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights with >= 2 dims, none on biases and norm scales (1-D)."""
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(net: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # The fused CUDA kernel updates every tensor in one launch; CPU uses the foreach path.
    return torch.optim.AdamW(param_groups(net, config.weight_decay), lr=config.lr, betas=config.betas,
                             fused=device.type == "cuda")


class EMA:
    """Exponential moving average of a network's floating-point tensors (fp32 copies).

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` so early, random weights fade fast.
    """

    def __init__(self, net: nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for key, value in net.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value.detach().float(), 1.0 - decay)
        self.updates += 1

    def state_for(self, net: nn.Module) -> dict[str, torch.Tensor]:
        """A full state dict of ``net`` with the averaged tensors in its dtypes."""
        return {k: self.shadow[k].to(v.dtype) if k in self.shadow else v for k, v in net.state_dict().items()}

    def load(self, state: Mapping[str, torch.Tensor], updates: int) -> None:
        for key in self.shadow:
            self.shadow[key].copy_(state[key])
        self.updates = int(updates)


# ----------------------------------------------------------------------------- distributed

@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        owns = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if present, else CPU; under torchrun on CUDA the LOCAL_RANK-th GPU."""
    requested = name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {requested!r} is not a device (auto, cpu, cuda or cuda:N): {err}") from None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    elif device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.index != local_rank:
        # Every rank on one GPU would fail at the first collective, deep inside NCCL.
        raise ValueError(f"--device {requested} under torchrun ({os.environ['WORLD_SIZE']} ranks) would put rank "
                         f"{os.environ.get('RANK', local_rank)} on GPU {device.index}, not its own "
                         f"(LOCAL_RANK {local_rank}); use --device cuda or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"CUDA requested (--device {requested}) but torch.cuda.is_available() is False "
                             f"({why}); use --device cpu or auto")
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested}: GPU {device.index} does not exist "
                             f"({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(device)
    return device


# ----------------------------------------------------------------------------- data

class StepBatches(IterableDataset):
    """One rank's batches for steps ``start .. stop-1`` of a :class:`model.data.TrainStream`.

    Batch ``j`` holds the rank's stream entries ``[j·b, (j+1)·b)`` (entry ``i`` is epoch
    ``i // epoch_size``, global position ``rank + (i % epoch_size)·world_size``, as the stream
    deals them). Worker ``w`` of ``W`` makes batches ``start + w, start + w + W, ...``, which the
    DataLoader returns in step order; a resumed run starts at its step without reading the past.
    """

    def __init__(self, stream, batch_size: int, start: int, stop: int):
        self.stream, self.batch_size, self.start, self.stop = stream, int(batch_size), int(start), int(stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def entry(self, index: int, plans: dict) -> dict:
        """Materialise the rank's ``index``-th stream entry (``plans`` caches one epoch plan)."""
        s = self.stream
        epoch = s.epoch + index // s.epoch_size
        position = s.rank + (index % s.epoch_size) * s.world_size
        if epoch not in plans:
            plans.clear()  # one epoch at a time: a plan can hold millions of rows
            plans[epoch] = s.epoch_plan(epoch)
        return s.make_sample(epoch, position, plans[epoch][position % s.epoch_length])

    def __iter__(self) -> Iterator[dict]:
        from .data import collate_integer

        worker = get_worker_info()
        first, stride = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        plans: dict = {}
        b = self.batch_size
        for step in range(self.start + first, self.stop, stride):
            batch = collate_integer([self.entry(i, plans) for i in range(step * b, (step + 1) * b)])
            batch["step"] = step
            yield batch


def make_stream(config: TrainConfig, dist: Distributed):
    """This rank's :class:`model.data.TrainStream` over the train shards, yielding integer images
    (uint8, 4x fewer bytes than float32 between processes and to the GPU)."""
    from .data import TrainStream

    return TrainStream(config.shards, config.size, task_weights=config.task_weights, seed=config.seed,
                       rank=dist.rank, world_size=dist.world_size, epoch_length=config.epoch_length, raw=True,
                       identity_rate=config.identity_rate)


def make_step_loader(stream, batch_size: int, start: int, stop: int, *, workers: int = 0,
                     pin_memory: bool = False) -> DataLoader:
    """DataLoader of a rank's batches for steps ``start .. stop-1`` (``batch_size`` per rank).

    Workers start from a fork server, not a fork of this process: a fork inherits OpenCV's (and
    OpenMP's) thread pools in a broken state and deadlocks if this process has used them (seen:
    after synthesising shards in-process, the workers hang in ``cv2.setNumThreads``). The server
    imports the loader's module (torch, OpenCV) once, before any thread pool exists, so workers
    fork with it loaded instead of each importing torch (8 workers on 2 cores: first batch 8.4 s
    -> 2.1 s).
    """
    import multiprocessing

    from .data import worker_init_for_this_process

    context = None
    if workers and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", "model.data"])  # takes effect when the server starts
    # The workers watch this process's pid (their parent is the fork server): a killed trainer
    # takes its workers, and with them the fork server and the resource tracker, along.
    return DataLoader(StepBatches(stream, batch_size, start, stop), batch_size=None, num_workers=workers,
                      pin_memory=pin_memory, worker_init_fn=worker_init_for_this_process() if workers else None,
                      multiprocessing_context=context)


_WORKER_ERROR_HEAD = "Caught {name} in DataLoader worker process "


def worker_error_message(err: BaseException) -> str | None:
    """The original message of an exception raised in a DataLoader worker; None for any other.

    torch re-raises a worker's exception in the main process as the same type, with "Caught T in
    DataLoader worker process N. Original Traceback ..." and the whole formatted traceback as its
    message. That traceback ends with the exception's own line, "module.T: message" ("T: message"
    for builtins), and the message runs from there to the end.
    """
    text = str(err)
    kind = type(err)
    if not text.startswith(_WORKER_ERROR_HEAD.format(name=kind.__name__)):
        return None
    starts = [(text.rfind("\n" + head), head) for head in
              (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: ")]
    position, head = max(starts)
    if position < 0:
        return None
    return text[position + 1 + len(head):].strip()


def unwrap_worker_errors(batches) -> Iterator:
    """Iterate ``batches``, re-raising an exception from a DataLoader worker with its original
    message (one line naming shard and sample, as with ``--workers 0``) instead of torch's
    traceback-in-a-message; the torch exception (which holds the worker's traceback as text)
    stays its ``__cause__`` for ``--verbose``."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            message = worker_error_message(err)
            if message is None:
                raise
            cause = err.with_traceback(None)  # its frames would keep the loader's iterator (and workers) alive
        else:
            yield batch
            continue
        del iterator  # the workers shut down now, not whenever the exception is freed
        try:
            clean = type(cause)(message)
        except Exception:  # a type that wants other arguments
            clean = RuntimeError(message)
        raise clean from cause


# ----------------------------------------------------------------------------- one training step

@dataclass
class StepResult:
    loss: float        # training objective (L1 for GenLV) averaged over the global batch
    grad_norm: float   # global gradient norm before clipping
    lr: float


def _on_device(batch: Mapping, device: torch.device) -> dict[str, torch.Tensor]:
    """The four images of a batch as float32 [0, 1] on ``device`` (integer batches are moved, then scaled)."""
    from .data import IMAGE_KEYS, batch_to_float

    moved = {k: batch[k].to(device, non_blocking=True) for k in IMAGE_KEYS}
    return moved if all(t.is_floating_point() for t in moved.values()) else batch_to_float(moved)


COMPILE_MODES = ("", "regional", "full")


def _choice(setting: str, value: Any, choices: tuple[str, ...], when_true: str) -> str:
    """Normalise an on/off-or-named setting: False/None/"off" -> "", True -> ``when_true``, else one
    of ``choices`` (ValueError naming the setting otherwise)."""
    if value in (None, False, "", "off", "none", "false"):
        return ""
    if value is True or value == "true":
        return when_true
    if value not in choices:
        names = ", ".join(c or "off" for c in choices)
        raise ValueError(f"{setting} must be one of {names} (or true/false), got {value!r}")
    return value


def compile_mode(value: Any) -> str:
    """Normalise a compile setting: off -> "", True -> "regional", else a COMPILE_MODES name."""
    return _choice("compile", value, COMPILE_MODES, "regional")


def compile_regions(net: nn.Module) -> list[nn.Module]:
    """The submodules a network declares as its repeated blocks (``compile_regions``: module classes)."""
    bare = objectives.unwrap(net)
    classes = tuple(getattr(bare, "compile_regions", ()))
    return [m for m in bare.modules() if classes and isinstance(m, classes)]


CHECKPOINTING_LEVELS = ("", "sublayer", "block")


def checkpointing_level(value: Any) -> str:
    """Normalise a checkpointing setting: off -> "", True -> "sublayer", else a level."""
    return _choice("checkpointing", value, CHECKPOINTING_LEVELS, "sublayer")


def enable_activation_checkpointing(net: nn.Module, level: str = "sublayer") -> int:
    """Turn on activation checkpointing at ``level`` ("sublayer" or "block") in every block that
    supports it (a ``checkpointed`` attribute); returns how many. ValueError if there are none."""
    level = checkpointing_level(level) or "sublayer"
    blocks = [m for m in objectives.unwrap(net).modules() if hasattr(type(m), "checkpointed")]
    if not blocks:
        raise ValueError(f"{type(objectives.unwrap(net)).__name__} has no blocks that support activation "
                         "checkpointing; turn checkpointing off for this architecture")
    for block in blocks:
        block.checkpointed = level
    return len(blocks)


def compile_network(model: nn.Module, mode: str) -> nn.Module:
    """Apply ``torch.compile`` as ``mode`` says; returns the module to call.

    "regional" compiles each repeated block in place (``nn.Module.compile``): blocks of one class
    and shape share one compiled graph, so compiling takes seconds per block type instead of
    tracing the whole network, and the state_dict keeps its names. A network that declares no
    regions is compiled whole.
    """
    mode = compile_mode(mode)
    if not mode:
        return model
    regions = compile_regions(model) if mode == "regional" else []
    # torch.compile is lazy: the work happens in the first step(s), which would look like a hang.
    log.info("torch.compile (%s, %s): the first steps include compiling%s", mode,
             f"{len(regions)} blocks" if regions else "the whole network",
             "" if next(model.parameters()).is_cuda else "; on the CPU it is slow and rarely pays off")
    if not regions:
        return torch.compile(model)
    # One graph per block shape: every U-Net level (and each batch size) is its own static-shape
    # graph. Automatic dynamic shapes would kick in at the second level and give symbolic sizes
    # that inductor handles worse (and, on torch 2.13 CPU, fails on); raise the per-code-object
    # graph limit so the later levels are not silently left in eager mode.
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    for block in regions:
        block.compile(dynamic=False)
    return model


class Trainer:
    """Network, optimizer, EMA and step counter; ``step(batch)`` performs one update."""

    def __init__(self, net: nn.Module, config: TrainConfig, device: torch.device, dist: Distributed | None = None):
        self.config, self.device, self.dist = config, device, dist or Distributed()
        self.net = net.to(device)
        if config.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if config.checkpointing:
            enable_activation_checkpointing(self.net, config.checkpointing)
        self.net.train()
        model: nn.Module = self.net
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # A network with parameters its forward never uses (PromptIR's dead convs, kept for a strict
            # load of the official weights) would stall DDP's gradient reduction at the second step.
            model = DistributedDataParallel(self.net, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=bool(getattr(self.net, "has_unused_parameters",
                                                                                False)))
        model = compile_network(model, config.compile)
        self.model = model
        self.optimizer = make_optimizer(self.net, config, device)
        self.ema = EMA(self.net, config.ema) if config.ema > 0 else None
        self.use_bf16 = bool(config.bf16) and device.type == "cuda"
        self.objective = objectives.objective_for(self.net)
        self.mask_generator = torch.Generator()  # CPU: the same masks on any device
        self.step_count = 0  # optimizer updates done

    def lr_at(self, step: int) -> float:
        c = self.config
        return learning_rate(step, peak=c.lr, warmup=c.warmup, total=c.steps, floor=c.min_lr)

    def masks_for(self, step: int) -> torch.Generator:
        """The mask generator, reseeded for ``step`` from the run's seed and this rank (resume redraws the same)."""
        seed = np.random.SeedSequence((int(self.config.seed), int(step), self.dist.rank)).generate_state(1, np.uint64)
        return self.mask_generator.manual_seed(int(seed[0]))

    def step(self, batch: Mapping[str, torch.Tensor]) -> StepResult:
        """Forward and training objective, backward, clip, then the AdamW (and EMA) update — unless the
        loss or the gradient norm is not finite, which raises NonFiniteLossError and leaves the weights as they were."""
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = _on_device(batch, self.device)
        if self.config.channels_last:
            images = {k: v.contiguous(memory_format=torch.channels_last) for k, v in images.items()}
        query, prompt_input, prompt_target, target = (
            images[k] for k in ("query", "prompt_input", "prompt_target", "target"))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            loss, _ = self.objective.loss(self.model, query, prompt_input, prompt_target, target,
                                          generator=self.masks_for(self.step_count))
        loss = loss.float()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm)
        # One host sync per step: the rank-averaged loss and the (already rank-equal) gradient norm.
        stats = self.dist.mean_(torch.stack([loss.detach().float(), grad_norm.detach().float()]))
        loss_value, norm_value = stats.tolist()
        step = self.step_count + 1
        if not math.isfinite(loss_value) or not math.isfinite(norm_value):
            what = f"loss is {loss_value}" if not math.isfinite(loss_value) else \
                f"gradient norm is {norm_value} (loss {loss_value:.6g})"
            tasks = sorted(set(batch.get("task", []))) if isinstance(batch.get("task"), list) else []
            raise NonFiniteLossError(f"{what} at step {step}" + (f" (tasks in the batch: {', '.join(tasks)})"
                                                                  if tasks else ""), step)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net)
        self.step_count = step
        return StepResult(loss_value, norm_value, lr)

    # -- checkpoint ----------------------------------------------------------------------
    def eval_state(self) -> dict[str, torch.Tensor]:
        return self.ema.state_for(self.net) if self.ema is not None else self.net.state_dict()

    def save_state(self, folder: Path) -> None:
        """Write what resuming needs into ``folder`` (a fresh temporary folder)."""
        write_safetensors(folder / "weights.safetensors", self.net.state_dict())
        if self.ema is not None:
            write_safetensors(folder / "ema.safetensors", self.ema.shadow)
        with open(folder / "optimizer.pt", "wb") as fh:  # durable before trainer.json marks the folder complete
            torch.save(self.optimizer.state_dict(), fh)
            fh.flush()
            os.fsync(fh.fileno())

    def load_state(self, folder: Path, trainer_info: Mapping) -> None:
        self.net.load_state_dict(_read_state_file(folder / "weights.safetensors"), strict=True)
        optimizer_path = folder / "optimizer.pt"
        try:
            optimizer_state = torch.load(optimizer_path, map_location=self.device, weights_only=True)
        except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
            raise damaged(optimizer_path, f"cannot be read ({type(err).__name__}: {str(err).split('. ')[0]})") \
                from None
        self.optimizer.load_state_dict(optimizer_state)
        # load_state_dict brings back the saved groups' settings too; a resume with another recipe
        # (_prepare_out warns of it) must train with the new one, and a CPU state resumed on CUDA fused.
        fresh = make_optimizer(self.net, self.config, self.device)
        for group, new in zip(self.optimizer.param_groups, fresh.param_groups):
            group.update({key: new[key] for key in ("weight_decay", "betas", "fused")})
        if self.ema is not None:
            ema_path = folder / "ema.safetensors"
            if not ema_path.is_file():
                raise TrainStateError(f"{folder}: EMA is on but the checkpoint has no ema.safetensors "
                                      "(it was trained without EMA)")
            self.ema.load(_read_state_file(ema_path), trainer_info.get("ema_updates", trainer_info["step"]))
        self.step_count = int(trainer_info["step"])


# ----------------------------------------------------------------------------- checkpoint folder

def _read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state folder's safetensors file; TrainStateError naming it if it is damaged."""
    from .checkpoints import CheckpointError

    try:
        return read_safetensors(path)[0]
    except (CheckpointError, OSError) as err:
        raise damaged(path, str(err).removeprefix(f"{path}: ")) from None


def eval_weights_problem(out: Path, step: int) -> str:
    """Why ``out``'s eval weights are not the step-``step`` export ("" when they are)."""
    from .checkpoints import CheckpointError

    path = out / WEIGHTS_NAME
    try:
        _, metadata = read_safetensors(path)
    except (CheckpointError, OSError) as err:
        return str(err).removeprefix(f"{path}: ")
    written = metadata.get("train_step")
    return f"they are from step {written}" if written is not None and written != str(step) else ""


def _share(path: Path) -> Path:
    """Give a file made by mkstemp/mkdtemp (private) the permissions the umask allows, like open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    return path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def state_folder(out: Path) -> Path | None:
    """The state folder of the last complete checkpoint in ``out`` (None if there is none).

    ``state.old`` only survives a crash between the two renames of a swap; it is then the latest.
    """
    for name in (STATE_DIR, STATE_DIR + ".old"):
        folder = out / name
        if (folder / "trainer.json").is_file():
            return folder
    return None


def damaged(path: Path, what: str) -> TrainStateError:
    """The error for a checkpoint file that cannot be read: names it and the ways out."""
    return TrainStateError(f"{path}: {what}; the checkpoint in {path.parent.parent} is damaged (the code keeps no "
                           "older one): train into a fresh --out, or delete that folder to start over")


def read_trainer_info(out: str | Path) -> dict | None:
    """The last checkpoint's trainer.json (None without one); TrainStateError if it is damaged."""
    folder = state_folder(Path(out))
    if folder is None:
        return None
    path = folder / "trainer.json"
    try:
        info = json.loads(path.read_text())
    except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged(path, f"not readable JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("step"), int):
        raise damaged(path, "no step count in it")
    return info


def save_checkpoint(out: Path, trainer: Trainer, info: Mapping, export: Mapping) -> None:
    """Write the state folder (swapped in whole), then the eval weights and config.json."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{STATE_DIR}.", suffix=".tmp", dir=out))
    try:
        trainer.save_state(tmp)
        _share(atomic_write_json(tmp / "trainer.json", dict(info)))  # written last: marks the folder complete
        _share(tmp)
        _fsync_dir(tmp)
        current, old = out / STATE_DIR, out / (STATE_DIR + ".old")
        if current.exists():  # complete (only ever made by the rename below), so an old one is stale
            if old.exists():
                shutil.rmtree(old)
            os.replace(current, old)
        os.replace(tmp, current)
        _fsync_dir(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    export_eval_weights(out, trainer, int(info["step"]), export)


def export_eval_weights(out: Path, trainer: Trainer, step: int, export: Mapping) -> None:
    """The eval weights (model.safetensors) and config.json of the trainer's state at ``step``."""
    # write_safetensors (inside save_model) writes a temporary file and renames it.
    save_model(_Weights(trainer.net, trainer.eval_state()), out / WEIGHTS_NAME, export["arch"],
               train_step=str(step), weights=export["weights"])
    _share(atomic_write_json(out / CONFIG_NAME, dict(export, step=step)))


def export_problem(out: Path, step: int) -> str:
    """Why ``out``'s model.safetensors or config.json is not the step-``step`` export ("" when both are):
    a run killed between swapping in its last state and writing them leaves the older ones."""
    problem = eval_weights_problem(out, step)
    if problem:
        return f"{WEIGHTS_NAME}: {problem}"
    try:
        written = json.loads((out / CONFIG_NAME).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return f"{CONFIG_NAME}: missing or unreadable"
    return f"{CONFIG_NAME}: it is from step {written}" if written != step else ""


class _Weights:
    """What ``save_model`` reads from a network (its config and a state dict), with other weights."""

    def __init__(self, net: nn.Module, state: Mapping[str, torch.Tensor]):
        self.config, self._state = getattr(net, "config", None), state

    def state_dict(self) -> Mapping[str, torch.Tensor]:
        return self._state


def remove_temporaries(out: Path) -> None:
    for path in out.glob(f".{STATE_DIR}.*.tmp"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out.glob(FAILURE_NOTES):
        path.unlink(missing_ok=True)


# Under DDP a rank that fails takes the others down with collective errors ("Connection closed by
# peer"); each failing rank leaves a note so that rank 0's summary names the first failure.
FAILURE_NOTES = ".failure.rank*.json"


def write_failure_note(out: Path, rank: int, message: str, failed_at: float) -> None:
    atomic_write_json(out / FAILURE_NOTES.replace("*", str(rank)),
                      {"rank": rank, "message": message, "time": failed_at}, durable=False)


def first_failure(out: Path, own: dict, world_size: int, wait_s: float = 2.0) -> dict:
    """The earliest of rank 0's failure ``own`` and the notes the other ranks leave within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    notes: list[dict] = []
    while time.monotonic() < deadline:
        notes = []
        for path in out.glob(FAILURE_NOTES):
            try:
                notes.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # being written
        if len(notes) >= world_size - 1:
            break
        time.sleep(0.1)
    return min([own, *notes], key=lambda note: note["time"])


# ----------------------------------------------------------------------------- metrics log

class MetricsLog:
    """``metrics.csv`` rows; a resumed run drops rows past its checkpoint, then appends."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows = self.read(path) if resume_step is not None and path.is_file() else []
        kept = [r for r in rows if int(r["step"]) <= (resume_step or 0)]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
                writer.writeheader()
                writer.writerows(kept)
            _share(tmp)

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: Mapping) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRICS_COLUMNS).writerow({k: row[k] for k in METRICS_COLUMNS})


# ----------------------------------------------------------------------------- the run

def network_overrides(config: TrainConfig, builder: Callable | None = None) -> dict:
    """The run's overrides plus what the architecture needs to take ``size`` crops (its
    ``size_overrides(size)``: PromptGIP's ``img_size``, Painter's canvas); {} added for the others.

    The network is probed on the meta device (no memory, no weights). Raises ValueError naming the
    architecture and a --size that works, or the --override that contradicts --size.
    """
    try:
        with torch.device("meta"):
            probe = (builder or registry.build)(config.arch, **config.overrides)
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as err:  # not an unknown arch (KeyError)
        given = " ".join(f"{k}={json.dumps(v)}" for k, v in config.overrides.items())
        raise ValueError(f"cannot build {config.arch}" + (f" with --override (train.overrides) {given}" if given
                                                          else "") + f": {err}") from None
    size_rule = getattr(probe, "size_overrides", None)
    if size_rule is None:
        return dict(config.overrides)
    try:
        wanted = size_rule(int(config.size))
    except ValueError as err:
        raise ValueError(f"--size {config.size}: {config.arch} {err}") from None
    for key, value in wanted.items():
        if key in config.overrides and json.dumps(config.overrides[key]) != json.dumps(value):
            raise ValueError(f"--override {key}={json.dumps(config.overrides[key])} contradicts --size {config.size}: "
                             f"{config.arch} is built for the crop size ({key}={json.dumps(value)}); drop the override")
    return {**config.overrides, **wanted}


def build_network(config: TrainConfig, builder: Callable | None = None, overrides: dict | None = None) -> nn.Module:
    """``model.build(arch, **network_overrides(config))``, weights drawn from ``seed`` (global RNG left as it was)."""
    if overrides is None:
        overrides = network_overrides(config, builder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return (builder or registry.build)(config.arch, **overrides)


def _check_size(net: nn.Module, config: TrainConfig) -> None:
    net_config = getattr(net, "config", None)
    multiple = int(getattr(net_config, "query_multiple", 1))
    if config.size % multiple:
        raise ValueError(f"--size {config.size}: {config.arch} needs crops that are multiples of {multiple}")


def _prepare_out(config: TrainConfig, dist: Distributed, manifest_sha: str, epoch_length: int,
                 every_sample_once: int | None = None) -> dict | None:
    """The trainer.json of the run to continue (None: start fresh); refuses to overwrite a run.

    ``every_sample_once``: the train samples of the shards, what an ``epoch_length`` of None means.
    """
    out = Path(config.out)
    info = read_trainer_info(out)
    if info is None:
        exported = [name for name in (WEIGHTS_NAME, CONFIG_NAME) if (out / name).is_file()]
        if exported:
            # A model without its training state (state/ deleted, a shipped or exported folder): nothing
            # to continue, and training here would overwrite it.
            raise TrainStateError(f"{out} holds a model ({', '.join(exported)}) but no training state to "
                                  f"continue: train into another --out, with --init {out} to start from its "
                                  "weights")
        if config.resume:
            log.info("--resume: no checkpoint in %s yet, starting from step 0", out)
        return None
    if not config.resume:
        raise TrainStateError(f"{out} already holds a run at step {info['step']}; pass --resume to continue it "
                              "or choose another --out")
    # A key the run's config.json lacks was added later: the run had its default.
    previous = {**TrainConfig().as_dict(), **info.get("config", {})}
    current = config.as_dict()
    for settings in (previous, current):  # two spellings each of one mix and one epoch plan
        if settings.get("task_weights") == "uniform":
            settings["task_weights"] = None
        if settings.get("epoch_length") is None:  # the same plan as that length spelled out
            settings["epoch_length"] = every_sample_once
    changed = [k for k in RUN_IDENTITY if previous.get(k) != current.get(k)]
    if changed:
        raise TrainStateError(f"{out}: cannot resume with different " + ", ".join(
            f"{k} ({previous.get(k)!r} -> {current.get(k)!r})" for k in changed))
    if info.get("data_manifest_sha256") != manifest_sha:
        log.warning("resuming on different shards (manifest sha256 %s, the run started on %s): the data "
                    "order is not the one of the first part", manifest_sha[:12],
                    str(info.get("data_manifest_sha256"))[:12])
    before = info.get("world_size", 1)
    if before != dist.world_size and (epoch_length % before or epoch_length % dist.world_size):
        log.warning("resuming a %s-rank run on %s ranks: the data order changes, since the epoch of %d "
                    "samples is not a multiple of both", before, dist.world_size, epoch_length)
    for key in ("steps", "lr", "min_lr", "warmup", "weight_decay", "betas", "grad_clip", "ema"):
        if previous.get(key) != current.get(key):
            log.warning("resuming with %s %r instead of %r: the run continues with a different recipe",
                        key, current.get(key), previous.get(key))
    return info


def warmup_problem(config: TrainConfig) -> str:
    """Why the schedule never reaches its peak learning rate ("" when it does).

    A warning, not an error: a short smoke run (``--steps 10`` over params.yaml's warm-up of 20)
    is a legitimate use, and a resumed run may shorten ``--steps`` on purpose.
    """
    if config.warmup < config.steps:
        return ""
    reached = learning_rate(config.steps - 1, peak=config.lr, warmup=config.warmup, total=config.steps,
                            floor=config.min_lr)
    return (f"--warmup {config.warmup} is not shorter than --steps {config.steps}: the learning rate rises for the "
            f"whole run, to {reached:.3g} at the last step (peak {config.lr:g}), and never decays; "
            "use a warm-up well below the steps")


def nothing_to_train_message(config: TrainConfig, step: int) -> str:
    """What a ``--resume`` says when the run is already at its last step (``--steps`` or ``--stop-at``)."""
    limit = f"--stop-at {config.stop_at}" if config.stop_at is not None and config.stop_at < config.steps \
        else f"--steps {config.steps}"
    return (f"nothing trained: {config.out} is already at step {step} and {limit} ends the run there; "
            "raise it to train further")


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, so a killed run still writes summary.json and stops its workers."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM killed


@contextlib.contextmanager
def sigterm_raises():
    """Within: SIGTERM raises Terminated in the main thread (elsewhere, or outside: left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held():
    """Within (main thread): SIGINT and SIGTERM wait for the block's end, then take effect as usual.

    torch.save cannot survive an exception raised by a signal handler inside its writer: the
    interrupted archive fails with "unexpected pos", which hid the interruption (exit 1, not 143).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum, frame):
        arrived.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:  # None: installed outside Python, so not restorable
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):  # again, now to the handlers in force (Terminated, Ctrl-C, ...)
            signal.raise_signal(sig)


def failure_message(err: BaseException) -> str:
    """summary.json's message for a run that ended with ``err``: the one line the CLI prints."""
    text = str(err).strip()
    if isinstance(err, Exception):
        return text or type(err).__name__
    return type(err).__name__ + (f": {text}" if text else "")  # KeyboardInterrupt, SystemExit


def _manifest_sha(shards: str) -> str:
    from taskgen.shards import manifest_sha256

    return manifest_sha256(shards)


def train(config: TrainConfig, *, builder: Callable | None = None, progress: bool = True) -> dict:
    """Run (or continue) training as ``config`` says; returns the summary also written to summary.json.

    ``builder(arch, **overrides)`` replaces ``model.build``. Raises NonFiniteLossError (a
    RuntimeError) when the loss becomes NaN/inf, after writing the summary.
    """
    config.validate()
    device = resolve_device(config.device)
    dist = Distributed.from_env(device)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    quiet = RanksAfterTheFirstQuiet(dist.rank)
    log.addFilter(quiet)
    try:
        with sigterm_raises():
            return _train(config, device, dist, builder, progress)
    finally:
        log.removeFilter(quiet)
        torch.set_num_threads(threads_before)
        dist.close()


class RanksAfterTheFirstQuiet(logging.Filter):
    """Under torchrun every rank would repeat each line: ranks other than 0 log errors only."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.ERROR


def _train(config: TrainConfig, device: torch.device, dist: Distributed, builder, progress: bool) -> dict:
    t_start = time.perf_counter()
    out = Path(config.out)
    stream = make_stream(config, dist)  # first: a missing or unsuitable shards folder fails fast
    overrides = network_overrides(config, builder)  # a --size the architecture cannot take fails fast too
    manifest_sha = _manifest_sha(config.shards)
    if config.batch % dist.world_size:  # before anything is written
        raise ValueError(f"--batch {config.batch} (global) is not divisible by the {dist.world_size} ranks")
    info = _prepare_out(config, dist, manifest_sha, stream.epoch_length, stream.every_sample_once)
    dist.barrier()  # every rank has read the old state before rank 0 may replace it
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_temporaries(out)
    net = build_network(config, builder, overrides)
    _check_size(net, config)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    init_sha = ""
    if config.init and info is None:  # a resumed run has its own weights
        init_sha = load_init_weights(net, config.init)
        log.info("initialised the weights from %s", config.init)
        warn_if_init_overrides_differ(config.init, overrides)
    trainer = Trainer(net, config, device, dist)
    elapsed_before, samples_before = 0.0, 0
    if info is not None:
        trainer.load_state(state_folder(out), info)
        elapsed_before, samples_before = float(info.get("elapsed", 0.0)), int(info.get("samples_seen", 0))
        log.info("resuming %s at step %d of %d", out, trainer.step_count, config.steps)
    start = trainer.step_count
    stop = max(start, min(config.steps, config.stop_at or config.steps))
    if info is not None:  # the run's own --init record, which config.json must keep
        init_sha = str(info.get("init_sha256", ""))
    export = {"arch": config.arch, "overrides": overrides, "name": config.name or out.name,
              "objective": trainer.objective.name,
              "weights": "ema" if trainer.ema is not None else "raw", "colour_order": "rgb",
              "data_manifest_sha256": manifest_sha, "train": config.as_dict()}
    if init_sha:
        export["init_sha256"] = init_sha
    idle = nothing_to_train_message(config, start) if info is not None and start == stop else ""
    if idle:
        problem = export_problem(out, start)
        if problem and dist.is_main:  # e.g. a damaged model.safetensors: export the state's weights again
            log.warning("%s: %s; writing both again from the training state at step %d", out, problem, start)
            with signals_held():
                export_eval_weights(out, trainer, start, export)
    if idle and config.summary_path.is_file():
        log.debug("%s", idle)  # the CLI prints it with the summary
        # The saved summary describes the run that trained; its "out" may be a folder since moved.
        return {**json.loads(config.summary_path.read_text()), "out": str(out), "nothing_trained": True,
                "message": idle}
    problem = warmup_problem(config)
    if problem and dist.is_main and not idle:
        log.warning("%s", problem)
    run = _RunRecord(start=start, checkpoint_step=start if info is not None else None)
    if info is not None and isinstance(info.get("losses"), dict):  # states before it: this process's losses only
        run.restore_losses(info["losses"])
    # Rows past the last full logging window are logged again, over the whole window, by this run;
    # an idle resume trains nothing, so it keeps every row (the last one may close an open window).
    kept_rows = (start if idle else start - min(run.window_steps, start)) if info is not None else None
    metrics = MetricsLog(config.metrics_path, kept_rows) if dist.is_main else None

    def checkpoint() -> None:
        with signals_held():  # a checkpoint is written whole (and recorded) or not started
            if dist.is_main:
                info_now = {"step": trainer.step_count, "steps": config.steps,
                            "samples_seen": samples_before + run.samples_global,
                            "elapsed": elapsed_before + time.perf_counter() - t_start,
                            "world_size": dist.world_size,
                            "ema_updates": trainer.ema.updates if trainer.ema is not None else 0,
                            "lr_next": trainer.lr_at(trainer.step_count), "data_manifest_sha256": manifest_sha,
                            "losses": run.loss_state(), "config": config.as_dict(),
                            **({"init_sha256": init_sha} if init_sha else {})}
                save_checkpoint(out, trainer, info_now, export)
            run.checkpoint_step = trainer.step_count

    loader = make_step_loader(stream, config.batch // dist.world_size, start, stop, workers=config.workers,
                              pin_memory=device.type == "cuda")
    bar = _progress_bar(progress and dist.is_main, start, config.steps)
    batches = unwrap_worker_errors(loader)
    window_t0, steps_since_row = time.perf_counter(), 0  # this process's share of the window (for samples/s)
    status, message, failed_at = "failed", "", time.time()
    out_of_time = False
    run.startup["setup_s"] = time.perf_counter() - t_start
    try:
        for batch in batches:
            if "first_batch_s" not in run.startup:
                run.startup["first_batch_s"] = time.perf_counter() - t_start
            if batch["step"] != trainer.step_count:
                raise RuntimeError(f"data order broken: got the batch of step {batch['step']} at step "
                                   f"{trainer.step_count}")
            result = trainer.step(batch)
            if "first_step_s" not in run.startup:  # the step ends with a host sync: its time is real
                run.startup["first_step_s"] = time.perf_counter() - t_start
                log.info("start-up: set up in %.1f s, the loader's first batch at %.1f s, the first step done at "
                         "%.1f s", run.startup["setup_s"], run.startup["first_batch_s"], run.startup["first_step_s"])
            run.record(result, batch["key"], config.batch)
            steps_since_row += 1
            step = trainer.step_count
            if step % config.log_every == 0 or step == stop:
                now = time.perf_counter()
                row = {"step": step, "loss": run.window_mean, "lr": result.lr,
                       "samples_per_s": steps_since_row * config.batch / max(now - window_t0, 1e-9),
                       "elapsed": elapsed_before + now - t_start, "grad_norm": result.grad_norm}
                if metrics is not None:
                    metrics.append(row)
                    _report(bar, row, config.steps)
                # A row at --stop-at between two multiples of log_every leaves its window open: the
                # checkpoint keeps it, and --resume logs the whole window where an uninterrupted run does.
                if step % config.log_every == 0:
                    run.close_window()
                    window_t0, steps_since_row = now, 0
            if bar is not None:
                bar.update(1)
            if step % config.ckpt_every == 0 and step != stop:
                checkpoint()
            if config.max_minutes and step != stop and step % config.log_every == 0 and \
                    _time_is_up(t_start, config.max_minutes, dist, device):
                out_of_time = True
                break
        if not out_of_time and trainer.step_count != stop:
            raise RuntimeError(f"the data ended at step {trainer.step_count}, before step {stop}")
        if run.checkpoint_step != trainer.step_count:
            checkpoint()
        status = "completed" if trainer.step_count >= config.steps else "stopped"
        if idle:
            message = idle
        elif out_of_time:
            message = (f"the {config.max_minutes:g}-minute budget ran out after step {trainer.step_count} of "
                       f"{config.steps}; continue with --resume")
        elif status == "stopped":
            message = f"stopped after step {stop} of {config.steps}; continue with --resume"
    except NonFiniteLossError as err:
        status = "nonfinite"
        message = f"{err}; training stopped. " + (
            f"The last good checkpoint in {out} is step {run.checkpoint_step}." if run.checkpoint_step is not None
            else f"No checkpoint was written to {out}.")
        err.args = (message,)
        raise
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (Terminated)
        status = "interrupted"
        message = f"{failure_message(err)} at step {trainer.step_count}; " + (
            f"continue with --resume from the checkpoint at step {run.checkpoint_step}"
            if run.checkpoint_step is not None else f"no checkpoint was written to {out}")
        err.args = (message,)  # the CLI prints it
        raise
    except BaseException as err:
        message = failure_message(err)  # summary.json says why the run failed
        failed_at = time.time()
        raise
    finally:
        batches.close()  # drops the loader's iterator: its workers shut down now, not at garbage collection
        if bar is not None:
            bar.close()
        # Held: torchrun SIGTERMs the other ranks as soon as one fails, and a signal raising in here
        # would leave no summary.json (or one without the failing rank).
        with signals_held():
            failed_rank = None
            if dist.enabled and status == "failed":
                if not dist.is_main:
                    write_failure_note(out, dist.rank, message, failed_at)
                else:
                    first = first_failure(out, {"rank": 0, "message": message, "time": failed_at}, dist.world_size)
                    message, failed_rank = first["message"], first["rank"]
            # Collectives only when every rank got here the same way (a NaN is seen by all ranks at once).
            collective = status not in ("failed", "interrupted")
            ranks = dist.gather(run.rank_record(dist.rank)) if collective else [run.rank_record(dist.rank)]
            summary = run.summary(status=status, message=message, config=config, trainer=trainer, device=device,
                                  dist=dist, ranks=ranks, samples_before=samples_before,
                                  elapsed=elapsed_before + time.perf_counter() - t_start,
                                  wall=time.perf_counter() - t_start, manifest_sha=manifest_sha)
            if failed_rank is not None:
                summary["failed_rank"] = failed_rank
            if dist.is_main:
                _share(atomic_write_json(config.summary_path, summary))
            if collective:
                dist.barrier()
    if idle:  # resumed without a saved summary: the CLI still leads with "nothing trained"
        summary["nothing_trained"] = True
    return summary


def _time_is_up(t_start: float, max_minutes: float, dist: Distributed, device: torch.device) -> bool:
    """Has this run spent its wall-clock budget? Every rank gets the same answer (any rank's clock)."""
    spent = torch.tensor([float(time.perf_counter() - t_start >= 60.0 * max_minutes)], device=device)
    return bool(dist.mean_(spent).item() > 0)


@dataclass
class _RunRecord:
    """What this process saw during the run: losses, samples, which keys (for the summary)."""

    start: int
    checkpoint_step: int | None
    samples_rank: int = 0
    samples_global: int = 0
    first_loss: float | None = None                 # of the whole run (kept in the checkpoint)
    recent: list = field(default_factory=list)      # last 10 step losses (likewise)
    window_sum: float = 0.0                         # losses since the last metrics row at a multiple of
    window_steps: int = 0                           # log_every (likewise: a resumed row covers its whole window)
    last_grad_norm: float | None = None
    first_keys: list = field(default_factory=list)
    keys_digest: Any = field(default_factory=hashlib.sha256)
    startup: dict = field(default_factory=dict)      # seconds from the run's start: setup, first batch, first step

    def record(self, result: StepResult, keys: list[str], global_batch: int) -> None:
        if self.first_loss is None:
            self.first_loss = result.loss
        if not self.first_keys:
            self.first_keys = list(keys)
        self.recent = (self.recent + [result.loss])[-10:]
        self.window_sum += result.loss
        self.window_steps += 1
        self.last_grad_norm = result.grad_norm
        for key in keys:
            self.keys_digest.update(key.encode() + b"\n")
        self.samples_rank += len(keys)
        self.samples_global += global_batch

    @property
    def window_mean(self) -> float:
        return self.window_sum / max(self.window_steps, 1)

    def close_window(self) -> None:
        self.window_sum, self.window_steps = 0.0, 0

    def loss_state(self) -> dict:
        """What a resumed run needs to report the losses an uninterrupted run would (trainer.json)."""
        return {"first_loss": self.first_loss, "recent": list(self.recent), "window_sum": self.window_sum,
                "window_steps": self.window_steps}

    def restore_losses(self, saved: Mapping) -> None:
        """Continue from a checkpoint's ``loss_state``; a malformed entry is ignored (this process's losses only)."""
        try:
            first = saved.get("first_loss")
            recent = [float(v) for v in saved.get("recent", [])][-10:]
            window_sum, window_steps = float(saved.get("window_sum", 0.0)), int(saved.get("window_steps", 0))
        except (TypeError, ValueError):
            log.warning("the checkpoint's loss history is malformed; the summary covers this run's steps only")
            return
        self.first_loss = float(first) if isinstance(first, (int, float)) else None
        self.recent, self.window_sum, self.window_steps = recent, window_sum, max(window_steps, 0)

    def rank_record(self, rank: int) -> dict:
        return {"rank": rank, "samples": self.samples_rank, "keys_sha256": self.keys_digest.hexdigest(),
                "first_keys": self.first_keys}

    def summary(self, *, status, message, config, trainer, device, dist, ranks, samples_before, elapsed, wall,
                manifest_sha) -> dict:
        return {
            "status": status, "message": message, "arch": config.arch,
            "params": sum(p.numel() for p in trainer.net.parameters()),
            "step": trainer.step_count, "steps": config.steps, "start_step": self.start,
            "checkpoint_step": self.checkpoint_step, "first_loss": self.first_loss,
            "final_loss": self.recent[-1] if self.recent else None,
            "mean_loss_last_10": sum(self.recent) / len(self.recent) if self.recent else None,
            "last_grad_norm": self.last_grad_norm, "samples_seen": samples_before + self.samples_global,
            "samples_per_s": self.samples_global / max(wall, 1e-9), "elapsed": elapsed,
            "device": _device_name(device), "world_size": dist.world_size, "global_batch": config.batch,
            "bf16": trainer.use_bf16, "compile": compile_mode(config.compile) or "off", "ema": config.ema, "out": str(config.out),
            "data_manifest_sha256": manifest_sha, "ranks": ranks, "startup_s": dict(self.startup),
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _progress_bar(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True)


def _report(bar, row: Mapping, total: int) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", sps=f"{row['samples_per_s']:.1f}",
                        refresh=False)
    else:
        log.info("step %d/%d loss %.5f lr %.3e %.1f samples/s", row["step"], total, row["loss"], row["lr"],
                 row["samples_per_s"])
