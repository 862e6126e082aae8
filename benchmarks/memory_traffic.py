"""Memory traffic of a training step (or an inference) per sample, op by op, under CUDA's bf16
autocast policy, on the CPU; and the speed it caps on a given GPU.

    python benchmarks/memory_traffic.py --arch genlv-tiny --size 32                            # smoke
    python benchmarks/memory_traffic.py --arch genlv-base --size 64 --scale-to 256 --gpu h200  # issue #6

Why: GenLV-base trains at ~16 samples/s on an H200 while its FLOPs allow hundreds, and its
profile is a long chain of small kernels at full resolution (``results/gpu-h200``). Such a step
is bounded by the bytes its kernels move through GPU memory, and those bytes are a property of
the code, not of the GPU, so they are counted here, where there is no GPU.

Method: every aten operator of the forward of the training objective and of its backward is
recorded with a ``TorchDispatchMode`` (what an eager GPU step launches as kernels, one or a few
per operator). An operator reads each distinct tensor argument and writes each output: bytes =
elements addressed × element size (a broadcast dimension of stride 0 counts once); an ``out=``
buffer is written, not read, and so is the destination of ``copy_``, ``fill_`` and ``zero_``;
``zeros_like`` and ``new_zeros`` read only a shape. Views, reshapes that alias their input,
``detach`` and allocations (``empty_like``) move nothing. Operators that CUDA runs as several
kernels reading the same inputs are counted per kernel (``KERNEL_READS``): a convolution's
backward reads the output gradient once for the input gradient, once for the weight gradient and
once for the bias gradient; LayerNorm's backward reads dY and X for the input gradient and again
for gamma's and beta's. Copies an operator makes inside itself are invisible to the dispatch mode;
the one CUDA is known to make here is added (``IMPLICIT_COPIES``): LayerNorm makes its input
contiguous, forward and backward, and the channel LayerNorm of an NCHW map hands it a permuted
view (``--channels-last`` avoids it). The forward runs under CPU bf16 autocast plus the CUDA policy's
extras (``activation_memory.CudaAutocastExtras``), so its casts are the ones CUDA's autocast makes.
``scaled_dot_product_attention`` is counted as CUDA's fused kernels run it, not as the CPU's math
fallback: the forward reads q, k, v and the bias and writes the output and its log-sum-exp; the
backward reads those, the output gradient and a row sum, and writes dq, dk, dv and the bias
gradient (when the bias needs one); the fallback's own operators (which write the whole attention
matrix) are left out, and with them what autograd does inside the call for inputs that are fp32
under autocast (the gradients' casts back), leaves, or the same tensor twice (the gradients' sum);
GenLV's SDPA inputs are none of these. Operators are attributed to the innermost module that ran them, the
backward ones through the autograd node that runs them (tagged in the forward by the torch call
or, for a custom ``autograd.Function``, the module that made it; a node created inside a
composite operator takes its consumer's module).

Like ``activation_memory.py``, each figure is measured at batch 2 and batch 4: half the
difference is the cost of one sample; what is left at batch 0 is the per-step cost (weights,
their casts, their gradients), which does not scale with the image size. ``--scale-to`` reports
a larger size from cheaper runs: the per-sample bytes are measured at ``--size`` and twice that and
fitted as a + b·pixels per operator and module, since some (MDTA's C×C attention) do not grow
with the image. Measure at a size whose coarsest window-attention level still holds several
windows (64 for GenLV): with a single window some copies become views.

What the figures bound, at ``--batch``: a step cannot take less than its bytes over the GPU's
memory bandwidth, nor less than its FLOPs (forward × 3, as ``bench_train.py`` counts them) over
the dense bf16 peak. ``eager`` is every operator's traffic, as an eager step launches them;
``stored activations`` is the floor of any implementation, fused or not, that keeps what this code
saves for the backward (``activation_memory.py``): written once, read once. Not counted: the
gradient clipping (reads the fp32 gradients for their norm, then scales them in place) and the
fused AdamW update (reads gradients, weights and two moments, writes the last three): ~40 bytes
per parameter, 1.6 GB per step for GenLV-base, 24 MB per sample at batch 64; cuDNN's own
workspace traffic; caches (an H200's 50 MB L2 holds few of these feature maps); and kernels that
run below the bandwidth (most small ones do).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from activation_memory import CudaAutocastExtras, check_model_and_counts, per_sample as saved_per_sample  # noqa: E402
from bench_train import check_size, forward_flops, random_batch  # noqa: E402

from model.data import batch_to_float  # noqa: E402
from model.objectives import objective_for, predict  # noqa: E402
from model.train import TrainConfig, build_network  # noqa: E402
from taskgen.atomic import atomic_write_json  # noqa: E402

# Nominal figures of the GPUs the device tool lends: (HBM bytes/s, dense bf16 FLOP/s).
GPU_SPECS = {"h200": (4.8e12, 989e12), "h100": (3.35e12, 989e12)}
SDPA_TAG = "scaled_dot_product_attention"
TAG_KEY = "llvbench_module"
PHASES = ("forward", "backward")


def footprint(tensor: torch.Tensor | None) -> int:
    """Bytes a kernel reads or writes for ``tensor``: its elements, each dimension of stride 0 once (None: 0)."""
    if tensor is None or tensor.numel() == 0:
        return 0
    elements = math.prod(n for n, s in zip(tensor.shape, tensor.stride()) if s != 0)
    return elements * tensor.element_size()


def _tensors(values) -> list[torch.Tensor]:
    """The tensors among an operator's arguments or results (one level of lists, as aten passes them)."""
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


# Operators that only allocate: no kernel touches the memory.
ALLOCATORS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}
# Operators that read only the shape and dtype of their tensor argument.
METADATA_ONLY = {"zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
                 "new_full"}
# In-place operators that overwrite their destination without reading it.
OVERWRITES = {"copy_", "fill_", "zero_"}


def _bind(func, args, kwargs) -> dict:
    """An operator's arguments by their schema names."""
    return {a.name: v for a, v in zip(func._schema.arguments, args)} | dict(kwargs)


def _convolution_backward_reads(bound: dict) -> int:
    """cuDNN runs up to three kernels, each reading the output gradient: the input gradient (which
    also reads the weight), the weight gradient (which also reads the input), the bias gradient."""
    grad, (want_input, want_weight, want_bias) = footprint(bound["grad_output"]), bound["output_mask"]
    return (want_input * (grad + footprint(bound["weight"])) + want_weight * (grad + footprint(bound["input"]))
            + want_bias * grad)


def _layer_norm_backward_reads(bound: dict) -> int:
    """Two kernels: the input gradient reads dY, X, the row statistics and gamma; gamma's and beta's
    gradients read dY, X and the statistics again."""
    want_input, want_weight, want_bias = bound["output_mask"]
    shared = sum(footprint(bound[name]) for name in ("grad_out", "input", "mean", "rstd"))
    return want_input * (shared + footprint(bound["weight"])) + (want_weight or want_bias) * shared


# Operators that CUDA runs as several kernels which read the same inputs again.
KERNEL_READS = {"convolution_backward": _convolution_backward_reads,
                "native_layer_norm_backward": _layer_norm_backward_reads}
# Arguments that CUDA's kernel makes contiguous first (``expect_contiguous``): a copy inside the
# operator, which the dispatch mode does not see. A channel LayerNorm of an NCHW map takes a
# permuted view, so each forward and backward copies it.
IMPLICIT_COPIES = {"native_layer_norm": ("input",), "native_layer_norm_backward": ("input",)}


def implicit_copy_bytes(name: str, bound: dict) -> int:
    """Bytes of the contiguous copies operator ``name`` makes inside itself (IMPLICIT_COPIES): read + write."""
    return sum(2 * footprint(bound[n]) for n in IMPLICIT_COPIES.get(name, ())
               if isinstance(bound.get(n), torch.Tensor) and not bound[n].is_contiguous())


def _out_names(func) -> set[str]:
    return {a.name for a in func._schema.arguments if a.is_out}


def _read_arguments(func, bound: dict) -> list[torch.Tensor]:
    """The tensors an operator reads: all its tensor arguments except ``out=`` buffers, which it only
    writes, the destination of an overwrite (``copy_``) and the template of ``zeros_like``/``new_zeros``."""
    name = func.overloadpacket.__name__
    if name in METADATA_ONLY:
        return []
    skip = _out_names(func) | ({"self"} if name in OVERWRITES else set())
    return _tensors([v for k, v in bound.items() if k not in skip])


def bytes_read(func, bound: dict) -> int:
    """Bytes an operator reads (its arguments by name, ``_bind``): each distinct tensor it reads once,
    or its kernels' model (KERNEL_READS)."""
    name = func.overloadpacket.__name__
    if name in KERNEL_READS:
        return KERNEL_READS[name](bound)
    read, seen = 0, set()
    for t in _read_arguments(func, bound):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if key not in seen:
            seen.add(key)
            read += footprint(t)
    return read


def _writes_in_place(func) -> bool:
    """True for an operator that writes into one of its arguments (``add_``, ``copy_``, ``out=``)."""
    return any(r.alias_info is not None and r.alias_info.is_write for r in func._schema.returns)


def _nodes_between(output: torch.Tensor, inputs: list[torch.Tensor]) -> list:
    """The autograd nodes an operator created: from ``output``'s node back to its inputs' nodes."""
    stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
    start = output.grad_fn
    found, todo = [], [start] if start is not None else []
    seen = set()
    while todo:
        node = todo.pop()
        if node in seen or node in stop or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        found.append(node)
        todo.extend(n for n, _ in node.next_functions if n is not None)
    return found


class TrafficLedger(TorchDispatchMode):
    """Bytes read + written by every operator, by phase, by operator and by innermost module type;
    also counts the operators that move bytes (an eager step's kernel launches, roughly)."""

    def __init__(self, net: torch.nn.Module, half_precision_bytes: int | None):
        super().__init__()
        self.half_bytes = half_precision_bytes  # element size of SDPA's inputs under autocast
        self.phase = "forward"
        self.by_op: dict[tuple[str, str], int] = defaultdict(int)
        self.by_module: dict[tuple[str, str], int] = defaultdict(int)
        self.by_pair: dict[tuple[str, str], int] = defaultdict(int)  # (phase, "module · operator")
        self.kernels: dict[str, int] = defaultdict(int)
        self.stack: list[str] = ["(outside modules)"]
        self.inside_sdpa = False
        self.handles = []
        for module in net.modules():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module, inputs) -> None:  # a hook that returns something replaces the inputs
        self.stack.append(type(module).__name__)

    def _leave(self, module, inputs, output) -> None:
        label = self.stack.pop()
        # Nodes no torch call tagged (a custom autograd.Function's) belong to the module that made them.
        for t in _tensors(output if isinstance(output, (list, tuple)) else [output]):
            for node in _nodes_between(t, _tensors(inputs)):
                node.metadata.setdefault(TAG_KEY, label)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def add(self, op: str, module: str, nbytes: int) -> None:
        self.by_op[self.phase, op] += nbytes
        self.by_module[self.phase, module] += nbytes
        self.by_pair[self.phase, f"{module} · {op}"] += nbytes
        self.kernels[self.phase] += 1

    def module_now(self) -> str | None:
        """The module an operator belongs to; None for the internals of a fused-counted SDPA."""
        if self.phase == "forward":
            return None if self.inside_sdpa else self.stack[-1]
        node = torch._C._current_autograd_node()
        tag = "(autograd engine)" if node is None else node.metadata.get(TAG_KEY, "(untagged)")
        return None if tag == SDPA_TAG else tag

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        module = self.module_now()
        if module is None:
            return out  # inside SDPA: counted as the fused kernels (``sdpa``), not as the CPU's fallback
        name = func.overloadpacket.__name__
        if name in ALLOCATORS:
            return out
        bound, out_names = _bind(func, args, kwargs), _out_names(func)
        outputs = _tensors(out if isinstance(out, (list, tuple)) else [out])
        input_storages = {t.untyped_storage().data_ptr()
                          for t in _tensors([v for k, v in bound.items() if k not in out_names])}
        in_place = _writes_in_place(func)
        written = sum(footprint(t) for t in outputs
                      if in_place or t.untyped_storage().data_ptr() not in input_storages)
        if written == 0 and not in_place:
            return out  # a view, an aliasing reshape or detach: metadata only
        self.add(name, module, bytes_read(func, bound) + written)
        copies = implicit_copy_bytes(name, bound)
        if copies:
            self.add(f"contiguous copy in {name}", module, copies)
        return out

    # -- SDPA as CUDA's fused kernels move it ------------------------------------------------
    def sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
             out: torch.Tensor) -> None:
        """Add the fused kernels' forward and backward traffic of one SDPA call."""
        half = self.half_bytes or q.element_size()

        def size(t: torch.Tensor | None, element: int) -> int:
            return 0 if t is None else footprint(t) // t.element_size() * element

        for t in (q, k, v, mask):  # autocast's casts of fp32 inputs: read 4 bytes, write 2
            if t is not None and t.is_floating_point() and t.element_size() > half:
                self.add("_to_copy", self.stack[-1], size(t, t.element_size()) + size(t, half))

        rows = math.prod(out.shape[:-1]) * 4  # log-sum-exp (and the backward's row sums), fp32
        qkv, o = size(q, half) + size(k, half) + size(v, half), size(out, half)
        bias = size(mask, half) if mask is not None and mask.is_floating_point() else size(mask, 1)
        self.phase = "forward"
        self.add(SDPA_TAG + " (fused)", self.stack[-1], qkv + bias + o + rows)
        # The kernel writes the bias gradient at the full broadcast size (autograd then sums it down).
        grad_bias = math.prod(out.shape[:-1]) * k.shape[-2] * half if (
            mask is not None and mask.requires_grad) else 0
        if q.requires_grad or k.requires_grad or v.requires_grad or grad_bias:
            # Row sums of dO·O first (read both, write fp32 rows); then read q, k, v, the bias, dO,
            # the log-sum-exp and the row sums, and write dq, dk, dv and the bias gradient.
            backward = (2 * o + rows) + (qkv + bias + o + 2 * rows) + qkv + grad_bias
            self.phase = "backward"
            self.add(SDPA_TAG + " (fused)", self.stack[-1], backward)
            self.phase = "forward"


class ModuleTags(TorchFunctionMode):
    """Tags the autograd node of every torch call's result with the module that ran it, so the
    backward's operators can be attributed; SDPA calls are handed to the ledger whole."""

    def __init__(self, ledger: TrafficLedger):
        super().__init__()
        self.ledger = ledger

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(func, args, kwargs)
        out = func(*args, **kwargs)
        for t in _tensors(out if isinstance(out, (list, tuple)) else [out]):
            if t.grad_fn is not None and TAG_KEY not in t.grad_fn.metadata:
                t.grad_fn.metadata[TAG_KEY] = self.ledger.stack[-1]
        return out

    def _sdpa(self, func, args, kwargs):
        names = ("query", "key", "value", "attn_mask")
        bound = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
        self.ledger.inside_sdpa = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.ledger.inside_sdpa = False
        inputs = [t for t in bound.values() if isinstance(t, torch.Tensor)]
        for node in _nodes_between(out, inputs):
            node.metadata[TAG_KEY] = SDPA_TAG
        self.ledger.sdpa(bound["query"], bound["key"], bound["value"], bound.get("attn_mask"), out)
        return out


def propagate_tags(root) -> None:
    """Give every untagged autograd node upstream of ``root`` its consumer's tag (the nodes a
    composite operator creates inside itself); SDPA's tag is not passed on past its inputs."""
    todo, seen = [(root, "(outside modules)")], set()
    while todo:
        node, inherited = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        tag = node.metadata.setdefault(TAG_KEY, inherited)
        passed = "(outside modules)" if tag == SDPA_TAG else tag
        todo.extend((n, passed) for n, _ in node.next_functions)


def record_traffic(net: torch.nn.Module, forward: Callable[[], torch.Tensor], *, bf16: bool,
                   backward: bool) -> TrafficLedger:
    """The ledger of ``forward()`` (which calls ``net``) and, if ``backward``, of the backward of the
    scalar it returns; under the CUDA autocast emulation when ``bf16``."""
    ledger = TrafficLedger(net, 2 if bf16 else None)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    try:
        with torch.set_grad_enabled(backward), ledger, ModuleTags(ledger), autocast, CudaAutocastExtras():
            loss = forward()
        if backward:
            propagate_tags(loss.grad_fn)
            ledger.phase = "backward"
            with ledger:
                loss.float().backward()
    finally:
        ledger.close()
    return ledger


def step_traffic(arch: str, size: int, batch: int, *, bf16: bool, inference: bool, channels_last: bool = False,
                 seed: int = 0) -> TrafficLedger:
    """The ledger of one training step's forward + backward (or one inference) at ``batch``; with
    ``channels_last``, weights and images in that memory format, as ``llvbench train --channels-last``."""
    torch.manual_seed(seed)  # weight init only; the images come from an explicit generator
    net = build_network(TrainConfig(arch=arch, size=size))
    net.train(not inference)
    images = batch_to_float(random_batch(batch, size, torch.device("cpu")))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = {k: v.contiguous(memory_format=torch.channels_last) for k, v in images.items()}
    if inference:
        return record_traffic(net, lambda: predict(net, images["query"], images["prompt_input"],
                                                   images["prompt_target"]), bf16=bf16, backward=False)
    objective = objective_for(net)

    def training_loss() -> torch.Tensor:
        return objective.loss(net, images["query"], images["prompt_input"], images["prompt_target"],
                              images["target"], generator=torch.Generator().manual_seed(seed))[0]

    return record_traffic(net, training_loss, bf16=bf16, backward=True)


def split_costs(small: dict, large: dict, batches: tuple[int, int]) -> tuple[dict, dict]:
    """(per sample, per step) for every key of two measurements at ``batches`` (a straight line)."""
    (b1, b2), keys = batches, set(small) | set(large)
    slope = {k: (large.get(k, 0) - small.get(k, 0)) / (b2 - b1) for k in keys}
    const = {k: small.get(k, 0) - b1 * slope[k] for k in keys}
    return slope, const


def measure(arch: str, size: int, *, bf16: bool, inference: bool, channels_last: bool = False) -> dict:
    """Per-sample and per-step bytes by phase, operator and module (batches 2 and 4), and kernel counts."""
    batches = (2, 4)
    small, large = (step_traffic(arch, size, b, bf16=bf16, inference=inference, channels_last=channels_last)
                    for b in batches)
    result = {"kernels": dict(large.kernels)}
    for name in ("by_op", "by_module", "by_pair"):
        slope, const = split_costs(getattr(small, name), getattr(large, name), batches)
        result[name] = slope
        result[name + "_step"] = const
    return result


def at_size(small: dict, large: dict, sizes: tuple[int, int], size: int) -> dict:
    """Per-sample bytes at ``size``² from measurements at the two ``sizes``: a + b·pixels per key, so
    what does not grow with the image (MDTA's C×C attention, per-window tables) is not scaled up."""
    (p1, p2), target = (s * s for s in sizes), size * size
    keys = set(small) | set(large)
    return {k: small.get(k, 0) + (large.get(k, 0) - small.get(k, 0)) * (target - p1) / (p2 - p1) for k in keys}


def phase_totals(table: dict) -> dict[str, float]:
    return {phase: sum(v for (p, _), v in table.items() if p == phase) for phase in PHASES}


def ceiling(per_sample: float, per_step: float, flops: float, batch: int, gpu: str) -> dict:
    """Time bounds of one step at ``batch`` on ``gpu`` and the samples/s they cap."""
    bandwidth, peak = GPU_SPECS[gpu]
    memory_s = (per_step + batch * per_sample) / bandwidth
    compute_s = batch * flops / peak
    return {"memory_ms": memory_s * 1e3, "compute_ms": compute_s * 1e3,
            "samples_per_s": batch / max(memory_s, compute_s)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="genlv-tiny")
    parser.add_argument("--size", type=int, default=64, help="size of the measured run (query and prompts)")
    parser.add_argument("--scale-to", type=int,
                        help="report for this size: measure at --size and twice it, fit bytes = a + b*pixels")
    parser.add_argument("--batch", type=int, default=64, help="the training batch to bound")
    parser.add_argument("--gpu", choices=sorted(GPU_SPECS), default="h200")
    parser.add_argument("--inference", action="store_true", help="one forward without autograd (bounds batch 1)")
    parser.add_argument("--fp32", action="store_true", help="no autocast (the CPU training path)")
    parser.add_argument("--channels-last", action="store_true",
                        help="weights and images in channels_last, as llvbench train --channels-last")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    check_model_and_counts(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    report_size = args.scale_to or args.size
    sizes = (args.size,) if report_size == args.size else (args.size, 2 * args.size)
    if len(sizes) == 2:
        check_size(parser, args.arch, sizes[1], option="--size x 2")
    bf16, what = not args.fp32, "an inference (forward, no autograd)" if args.inference else "a training step"
    policy = "CPU bf16 autocast + CUDA's fp32 layer_norm/norm/softmax" if bf16 else "fp32"
    print(f"{args.arch}: memory traffic of {what} at {report_size}² (measured at "
          f"{' and '.join(f'{s}²' for s in sizes)}, batches 2 and 4), {policy}; SDPA as fused kernels; "
          f"{'channels_last' if args.channels_last else 'NCHW'}")
    runs = [measure(args.arch, s, bf16=bf16, inference=args.inference, channels_last=args.channels_last)
            for s in sizes]
    figures = runs[0]
    if len(runs) == 2:  # per-sample bytes as a + b·pixels, read off at the report size
        for name in ("by_op", "by_module", "by_pair"):
            figures[name] = at_size(runs[0][name], runs[1][name], sizes, report_size)
    per_sample = figures["by_op"]
    per_step = figures["by_op_step"]
    totals, step_totals = phase_totals(per_sample), phase_totals(per_step)
    sample_bytes, step_bytes = sum(totals.values()), sum(step_totals.values())
    flops = forward_flops(build_network(TrainConfig(arch=args.arch, size=report_size)), report_size,
                          torch.device("cpu")) * (1 if args.inference else 3)
    result = {"arch": args.arch, "measured_sizes": list(sizes), "size": report_size, "bf16": bf16, "policy": policy,
              "channels_last": args.channels_last,
              "mode": "inference" if args.inference else "training", "gpu": args.gpu,
              "gpu_bandwidth_bytes_per_s": GPU_SPECS[args.gpu][0], "gpu_peak_flops": GPU_SPECS[args.gpu][1],
              "gb_per_sample": {p: v / 1e9 for p, v in totals.items()},
              "gb_per_step_fixed": {p: v / 1e9 for p, v in step_totals.items()},
              "kernels_per_step": figures["kernels"], "flops_per_sample": flops}
    print(f"\nper sample: {' + '.join(f'{p} {totals[p] / 1e9:.2f} GB' for p in PHASES if totals[p] or p == 'forward')}"
          f" = {sample_bytes / 1e9:.2f} GB; per step, whatever the batch: {step_bytes / 1e9:.3f} GB; "
          f"{sum(figures['kernels'].values())} operators that move bytes "
          f"({', '.join(f'{p} {n}' for p, n in figures['kernels'].items())}); "
          f"{flops / 1e9:.1f} GFLOPs per sample")
    tables = {"operator": per_sample, "module": figures["by_module"], "module · operator": figures["by_pair"]}
    for title, table in tables.items():
        merged: dict[str, float] = defaultdict(float)
        for (phase, name), value in table.items():
            merged[name] += value
        ranked = sorted(merged.items(), key=lambda kv: -kv[1])
        result[f"gb_per_sample_by_{title.replace(' · ', '_')}"] = {name: value / 1e9 for name, value in ranked}
        print(f"\nby {title} (forward + backward), per sample:" if not args.inference else f"\nby {title}, per sample:")
        for name, value in ranked[:args.rows]:
            print(f"  {value / 1e9:8.3f} GB  {100 * value / sample_bytes:5.1f} %  {name}")
    batch = 1 if args.inference else args.batch
    bounds = {"eager": ceiling(sample_bytes, step_bytes, flops, batch, args.gpu)}
    if not args.inference and bf16:
        saved = [{"total": saved_per_sample(args.arch, s, bf16=True, checkpointing="")["total"]} for s in sizes]
        stored = (at_size(*saved, sizes, report_size) if len(saved) == 2 else saved[0])["total"]
        result["stored_activation_gb_per_sample"] = stored / 1e9
        bounds["stored activations"] = ceiling(2 * stored, 0.0, flops, batch, args.gpu)
    result["batch"], result["bounds"] = batch, bounds
    bandwidth, peak = GPU_SPECS[args.gpu]
    print(f"\nbounds at batch {batch} on an {args.gpu.upper()} ({bandwidth / 1e12:.2f} TB/s, "
          f"{peak / 1e12:.0f} dense bf16 TFLOP/s), if every kernel ran at that rate:")
    for name, bound in bounds.items():
        print(f"  {name:>18}: memory {bound['memory_ms']:8.2f} ms, compute {bound['compute_ms']:7.2f} ms "
              f"-> at most {bound['samples_per_s']:8.1f} samples/s"
              + (f" ({1e3 / bound['samples_per_s']:.2f} ms per image)" if args.inference else ""))
    if args.json:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
