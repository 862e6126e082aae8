"""Activation memory of a training step per sample, under CUDA's bf16 autocast policy, on the CPU.

    python benchmarks/activation_memory.py --arch genlv-tiny --size 32                   # smoke
    python benchmarks/activation_memory.py --arch genlv-base --size 128 --scale-to 256   # issue #6

A GPU lease is short; what a training step stores for its backward is a property of the code, not
of the GPU, so it is measured here. The tensors autograd saves during the forward of the training
objective are recorded with ``torch.autograd.graph.saved_tensors_hooks`` (one count per storage,
parameters excluded), at batch 2 and batch 4: half the difference is the cost of one sample, free
of weights and their casts. The forward runs under CPU bf16 autocast, which casts convolutions,
matmuls, linear layers and SDPA to bf16 as CUDA's does; a function mode adds what CUDA's policy
does and the CPU's does not (``layer_norm``, vector norms and ``softmax`` in fp32, so their outputs
are fp32 copies), and only where autocast is on, as CUDA's does. Every feature map scales with the
pixel count, so ``--scale-to`` reports a larger size from a cheaper run (batch-independent terms
have already cancelled).

Not counted: what the backward allocates while it runs (gradients of one layer at a time), the
optimizer state and cuDNN workspaces. A checkpointed region's inputs are counted (non-reentrant
checkpointing saves them through the same hooks). With ``block`` checkpointing the backward
recomputes one block at a time, whose recompute checkpoints its sub-layers again; the estimate
printed for it adds the largest block's sub-layer inputs and the largest sub-layer's activations.
CPU SDPA kernels may save what CUDA's do not (the attention weights of its math fallback): the
table lists bytes by the module that saved them, so such rows can be read apart.

The printout is in MiB where a level's per-sample figure is under 1 GiB (smoke sizes), else in GiB;
the JSON's figures are always GiB (``gib_*`` keys).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import check_arch, check_size, random_batch  # noqa: E402

from model.data import batch_to_float  # noqa: E402
from model.objectives import objective_for  # noqa: E402
from model.train import TrainConfig, build_network, enable_activation_checkpointing  # noqa: E402
from taskgen.atomic import atomic_write_json  # noqa: E402


def _fp32_normalize(x, p=2.0, dim=1, eps=1e-12, out=None):
    """F.normalize as CUDA autocast runs it: an fp32 norm (input not cast), so the quotient is fp32."""
    if out is not None:  # F.normalize always passes the keyword; none of our models fills it
        raise NotImplementedError("the autocast emulation does not take F.normalize(out=...)")
    return x / torch.linalg.vector_norm(x, p, dim=dim, keepdim=True, dtype=torch.float32).clamp_min(eps)


class CudaAutocastExtras(TorchFunctionMode):
    """Adds to CPU autocast what CUDA's autocast policy does for these models and the CPU's does not:
    layer_norm on fp32 copies of its inputs ("fp32"), softmax and vector norms with fp32 outputs
    from unconverted inputs ("fp32_set_opt_dtype", "fp32_append_dtype")."""

    CAST_TO_FP32 = {F.layer_norm, torch.layer_norm}
    FP32_OUTPUT = {torch.Tensor.softmax, torch.softmax, F.softmax, torch.Tensor.norm, torch.norm,
                   torch.linalg.vector_norm}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        low = isinstance(args[0], torch.Tensor) and args[0].dtype in (torch.bfloat16, torch.float16) if args else False
        if torch.is_autocast_enabled("cpu"):
            if func is F.normalize:
                return _fp32_normalize(*args, **kwargs)
            if func in self.CAST_TO_FP32:
                args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            elif func in self.FP32_OUTPUT and low and kwargs.get("dtype") is None:
                kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


class SavedTensorLedger:
    """Bytes autograd saves, by storage (each counted once): by dtype, by the innermost module's type,
    by the outermost checkpointable block (a module with a ``checkpointed`` switch) around it, and by
    that block's child (its sub-layer: attention, feed-forward, ...)."""

    def __init__(self, net: torch.nn.Module):
        self.exclude = {p.untyped_storage().data_ptr() for p in net.parameters()}
        self.seen: set[int] = set()
        self.by_module: dict[str, int] = defaultdict(int)
        self.by_dtype: dict[str, int] = defaultdict(int)
        self.by_module_dtype: dict[tuple[str, str], int] = defaultdict(int)
        self.by_block: dict[str, int] = defaultdict(int)
        self.by_child: dict[str, int] = defaultdict(int)
        self.stack: list[tuple[str, str, bool]] = [("(outside modules)", "", False)]
        self.handles = []
        for name, module in net.named_modules():
            entry = (type(module).__name__, name, hasattr(type(module), "checkpointed"))
            self.handles.append(module.register_forward_pre_hook(self._enter(entry)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, entry: tuple[str, str, bool]):
        def hook(module, inputs):
            self.stack.append(entry)
        return hook

    def _leave(self, module, inputs, output):
        self.stack.pop()

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude and key not in self.seen and storage.nbytes() > 0:
            self.seen.add(key)
            label, dtype, size = self.stack[-1][0], str(tensor.dtype).replace("torch.", ""), storage.nbytes()
            self.by_module[label] += size
            self.by_dtype[dtype] += size
            self.by_module_dtype[label, dtype] += size
            depth = next((i for i, (_, _, is_block) in enumerate(self.stack) if is_block), None)
            if depth is not None:
                self.by_block[self.stack[depth][1]] += size
                if depth + 1 < len(self.stack):
                    self.by_child[self.stack[depth + 1][1]] += size
        return tensor

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    @property
    def total(self) -> int:
        return sum(self.by_module.values())


def saved_bytes(arch: str, size: int, batch: int, *, bf16: bool, checkpointing: str, seed: int = 0) -> SavedTensorLedger:
    """The ledger of one forward of the training objective at ``batch`` (random images, fixed seed)."""
    torch.manual_seed(seed)  # weight init only; the images come from an explicit generator
    net = build_network(TrainConfig(arch=arch, size=size))
    if checkpointing:
        enable_activation_checkpointing(net, checkpointing)
    net.train()
    images = batch_to_float(random_batch(batch, size, torch.device("cpu")))
    objective = objective_for(net)
    ledger = SavedTensorLedger(net)
    with torch.autograd.graph.saved_tensors_hooks(ledger.pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), CudaAutocastExtras():
        objective.loss(net, images["query"], images["prompt_input"], images["prompt_target"], images["target"],
                       generator=torch.Generator().manual_seed(seed))
    ledger.close()
    return ledger


def per_sample(arch: str, size: int, *, bf16: bool, checkpointing: str) -> dict:
    """(batch 4 - batch 2) / 2: bytes per sample, in all, by module type and by dtype. Not batch 1:
    there some strided views fold into one batched matmul that at batch > 1 needs (and saves) a copy."""
    small = saved_bytes(arch, size, 2, bf16=bf16, checkpointing=checkpointing)
    large = saved_bytes(arch, size, 4, bf16=bf16, checkpointing=checkpointing)

    def diff(a: dict, b: dict) -> dict:
        keys = sorted(set(a) | set(b), key=lambda k: -(b.get(k, 0) - a.get(k, 0)))
        return {k: (b.get(k, 0) - a.get(k, 0)) / 2 for k in keys if b.get(k, 0) != a.get(k, 0)}

    return {"total": (large.total - small.total) / 2, "by_module": diff(small.by_module, large.by_module),
            "by_dtype": diff(small.by_dtype, large.by_dtype), "by_block": diff(small.by_block, large.by_block),
            "by_child": diff(small.by_child, large.by_child)}


CHECKPOINTING_NAMES = ("none", "sublayer", "block")


def check_model_and_counts(parser: argparse.ArgumentParser, args) -> None:
    """parser.error (one line) for an unknown --arch, a --size it cannot take (bench_train.py's checks
    and wording), or a --scale-to, --batch, --rows or --threads below 1."""
    check_arch(parser, args.arch)
    check_size(parser, args.arch, args.size)
    if args.scale_to is not None and args.scale_to < 1:
        parser.error(f"--scale-to must be >= 1, got {args.scale_to}")
    for option, value in (("--batch", args.batch), ("--rows", args.rows), ("--threads", args.threads)):
        if value is not None and value < 1:
            parser.error(f"{option} must be >= 1, got {value}")


def check_arguments(parser: argparse.ArgumentParser, args) -> list[str]:
    """Refuse bad options before anything is built (parser.error, one line); returns the checkpointing levels."""
    check_model_and_counts(parser, args)
    levels = [s.strip() for s in args.checkpointing.split(",") if s.strip()]
    unknown = [level for level in levels if level not in CHECKPOINTING_NAMES]
    if unknown or not levels:
        parser.error(f"--checkpointing {args.checkpointing!r}: expected a comma list of "
                     f"{', '.join(CHECKPOINTING_NAMES)}")
    return levels


def size_unit(gib_per_sample: float) -> tuple[str, float]:
    """("MiB", 1024) for a figure under 1 GiB, so smoke sizes do not print 0.000; else ("GiB", 1)."""
    return ("MiB", 1024.0) if abs(gib_per_sample) < 1.0 else ("GiB", 1.0)


def size_text(gib: float) -> str:
    """A size given in GiB as '12.3 MiB' under 1 GiB, else '1.234 GiB'."""
    unit, factor = size_unit(gib)
    return f"{gib * factor:.1f} MiB" if unit == "MiB" else f"{gib:.3f} GiB"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="genlv-tiny")
    parser.add_argument("--size", type=int, default=64, help="size of the measured run (query and prompts)")
    parser.add_argument("--scale-to", type=int, help="report for this size (bytes x (scale-to/size)^2)")
    parser.add_argument("--checkpointing", default="none,block",
                        help="comma list of none, sublayer, block")
    parser.add_argument("--fp32", action="store_true", help="no autocast (the CPU training path)")
    parser.add_argument("--batch", type=int, default=64, help="batch to project the total for")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", help="write the figures here (in GiB)")
    args = parser.parse_args(argv)
    levels = check_arguments(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    report_size = args.scale_to or args.size
    scale = (report_size / args.size) ** 2
    result = {"arch": args.arch, "measured_size": args.size, "size": report_size, "bf16": not args.fp32,
              "policy": "CPU bf16 autocast + CUDA's fp32 layer_norm/norm/softmax" if not args.fp32 else "fp32",
              "levels": {}}
    print(f"{args.arch}: activation memory saved for backward per sample at {report_size}² "
          f"(measured at {args.size}²), {result['policy']}")
    measured = {level: per_sample(args.arch, args.size, bf16=not args.fp32,
                                  checkpointing="" if level == "none" else level)
                for level in dict.fromkeys(levels + (["none", "sublayer"] if "block" in levels else []))}

    def gib(value: float) -> float:
        return value * scale / 2**30

    def largest(table: dict) -> tuple[str, float]:
        name, value = max(table.items(), key=lambda kv: kv[1]) if table else ("", 0.0)
        return name, gib(value)

    for level in levels:
        figures = measured[level]
        total = gib(figures["total"])
        entry = {"gib_per_sample": total, f"gib_at_batch_{args.batch}": total * args.batch,
                 "by_module_gib": {k: gib(v) for k, v in figures["by_module"].items()},
                 "by_dtype_gib": {k: gib(v) for k, v in figures["by_dtype"].items()}}
        result["levels"][level] = entry
        unit, factor = size_unit(total)  # one unit for the level's per-sample rows
        dtypes = ", ".join(f"{k} {v * factor:.2f}" for k, v in entry["by_dtype_gib"].items())
        print(f"\ncheckpointing {level}: {total * factor:.3f} {unit} per sample ({dtypes}); x{args.batch} = "
              f"{size_text(total * args.batch)}")
        for name, value in list(entry["by_module_gib"].items())[:args.rows]:
            share = f"{100 * value / total:5.1f}" if total else "  n/a"
            print(f"  {value * factor:8.3f} {unit}  {share} %  {name}")
        if level == "none" and figures["by_block"]:
            entry["largest_block"] = dict(zip(("name", "gib_per_sample"), largest(figures["by_block"])))
            entry["largest_sublayer"] = dict(zip(("name", "gib_per_sample"), largest(figures["by_child"])))
            print(f"  largest checkpointable block: {entry['largest_block']['name']} "
                  f"{size_text(entry['largest_block']['gib_per_sample'])} per sample; largest sub-layer: "
                  f"{entry['largest_sublayer']['name']} {size_text(entry['largest_sublayer']['gib_per_sample'])}")
        if level == "block":
            # The backward recomputes one block at a time, and that recompute checkpoints its
            # sub-layers again: it holds the block's sub-layer inputs, then one sub-layer's activations.
            inputs = largest(measured["sublayer"]["by_block"])[1]
            sublayer = largest(measured["none"]["by_child"])[1]
            estimate = (total + inputs + sublayer) * args.batch
            entry[f"gib_at_batch_{args.batch}_during_backward"] = estimate
            print(f"  during the backward (one block's sub-layer inputs {size_text(inputs)} + one sub-layer "
                  f"{size_text(sublayer)} per sample): ~{size_text(estimate)} at batch {args.batch}, plus weights, "
                  "gradients, optimizer state and kernel workspaces")
    if args.json:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
