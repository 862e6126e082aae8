"""Training throughput of an architecture: samples/s, peak memory, MFU, and inference ms at batch 1.

    python benchmarks/bench_train.py --arch genlv-tiny --size 32 --batch 1,2 --steps 3 --threads 1   # CPU smoke
    python benchmarks/bench_train.py --arch genlv-base --size 256 --batch 8,16,32,64 --bf16 --compile  # GPU

One training step is exactly what ``llvbench train`` does per batch (``model.train.Trainer.step``:
forward, L1 loss, backward, gradient clipping, fused AdamW, optional EMA) on random images that are
already on the device, so data loading is not measured. FLOPs are the forward FLOPs of one sample
counted by ``torch.utils.flop_counter.FlopCounterMode`` times 3 (forward + backward), because the
counter overcounts the backward of grouped convolutions; MFU is against ``--peak-tflops``, by default
the device's dense bf16 peak when it is a GPU of ``PEAK_TFLOPS`` (989 = H100/H200); on the CPU or
another GPU there is no known peak and MFU is n/a (null in the JSON) unless ``--peak-tflops`` is
given. Peak memory is the CUDA allocator's peak per batch size; on the CPU it is
the process's peak resident set so far (it only grows). On CUDA, TF32 matmuls and cuDNN autotuning
are on, as in training (``--no-autotune`` turns the autotuning off); neither exists on the CPU, so
the JSON's ``cudnn_autotune`` is null there. Writes a JSON that names the device (``--json``; by
default bench-train-ARCH-SIZE.json in the current directory).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from datetime import datetime, timezone

import torch
from torch._dynamo.utils import counters as dynamo_counters

from bench.peers import peer_for, same_device_kind
from bench.tracks import cpu_name
from model.objectives import predict
from model.train import (Trainer, TrainConfig, build_network, checkpointing_level, compile_mode, compile_network,
                         network_overrides, resolve_device)
from pipelines.params import did_you_mean
from taskgen.atomic import atomic_write_json


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a fragment of torch.cuda.get_device_name;
# the first fragment found wins, so the more specific names come first.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


def known_peak_tflops(device: torch.device, name: str) -> float | None:
    """The dense bf16 peak of ``device`` named ``name`` from PEAK_TFLOPS; None on the CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    return next((peak for fragment, peak in PEAK_TFLOPS if fragment in name), None)


def forward_flops(net: torch.nn.Module, size: int, device: torch.device) -> int:
    """FLOPs of one forward pass at batch 1 (query and prompts ``size``²), as the bench calls the
    network (``model.objectives.predict``: Painter's canvas, PromptGIP's token sequence)."""
    from torch.utils.flop_counter import FlopCounterMode

    images = [torch.rand(1, 3, size, size, device=device) for _ in range(3)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        predict(net, *images)
    return int(counter.get_total_flops())


def random_batch(batch: int, size: int, device: torch.device) -> dict:
    """uint8 images on the device, as the training loader delivers them (seeded, no global RNG)."""
    generator = torch.Generator().manual_seed(batch)
    return {k: torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
            for k in ("prompt_input", "prompt_target", "query", "target")}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def trace(args, message: str) -> None:
    """With ``--trace``: one line per step as it ends, so a run killed by a timeout shows how far it got."""
    if args.trace:
        print(f"  {message}", flush=True)


def train_config(args, batch: int) -> TrainConfig:
    """The TrainConfig of one benchmarked step at ``batch`` (bench_train.py and profile_step.py): the
    options given, an endless schedule with no warm-up (a constant learning rate)."""
    return TrainConfig(arch=args.arch, batch=batch, size=args.size, bf16=args.bf16, compile=args.compile,
                       channels_last=args.channels_last, checkpointing=args.checkpointing,
                       ema=args.ema, steps=10**9, warmup=0, lr=1e-4)


def apply_cuda_settings(device: torch.device, *, autotune: bool, tf32: bool = True) -> bool | None:
    """What ``llvbench train`` sets on CUDA (model.train._train): TF32 matmuls and convolutions, cuDNN
    autotuning (``torch.backends.cudnn.benchmark``). Returns whether autotuning is on; None on the
    CPU, where neither setting exists and nothing is changed."""
    if device.type != "cuda":
        return None
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = autotune
    return autotune


def on_off(value: bool | str | None) -> str:
    """A setting as the summary line prints it: 'on'/'off' for switches, the mode's name, or 'off'
    for an empty mode and for a setting the device lacks (None)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value or "off"


def bench_batch(args, batch: int, device: torch.device, flops_per_sample: int) -> dict:
    """Median step time over ``args.steps`` timed steps after ``args.warmup`` untimed ones."""
    config = train_config(args, batch)
    torch._dynamo.reset()  # each batch size pays its own compilation: warmup_s is the compile time
    dynamo_counters.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t_build = time.perf_counter()
    trainer = Trainer(build_network(config), config, device)
    data = random_batch(batch, args.size, device)
    trace(args, f"batch {batch}: model built in {time.perf_counter() - t_build:.1f} s")
    t0 = time.perf_counter()
    for i in range(args.warmup):  # compilation, autotuning, allocator warm-up
        t = time.perf_counter()
        trainer.step(data)
        synchronize(device)
        trace(args, f"batch {batch}: warm-up step {i + 1} {time.perf_counter() - t:.2f} s, "
                    f"peak {peak_memory_gib(device):.1f} GiB")
    warmup_s = time.perf_counter() - t0
    # Graphs torch.compile built (0 in eager): each costs compile time, so count them.
    compiled_graphs = int(dynamo_counters["stats"]["unique_graphs"])
    if args.compile:
        trace(args, f"batch {batch}: {compiled_graphs} graphs compiled")
    times = []
    for i in range(args.steps):
        t = time.perf_counter()
        trainer.step(data)  # ends with a host sync (the loss check)
        times.append(time.perf_counter() - t)
        trace(args, f"batch {batch}: step {i + 1} {times[-1]:.2f} s")
    step_s = statistics.median(times)
    train_flops = 3 * flops_per_sample * batch
    return {"batch": batch, "step_ms": 1000 * step_s, "step_ms_min": 1000 * min(times),
            "samples_per_s": batch / step_s, "peak_memory_gib": peak_memory_gib(device),
            "achieved_tflops": train_flops / step_s / 1e12,
            "mfu": train_flops / step_s / (args.peak_tflops * 1e12) if args.peak_tflops else None, "warmup_s": warmup_s,
            "compiled_graphs": compiled_graphs, "oom": False}


def time_calls(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds per call of ``fn()`` after ``warmup`` untimed calls (synchronized on CUDA)."""
    times = []
    for i in range(warmup + steps):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def graphed(fn, device: torch.device):
    """``fn`` (no arguments, fixed input tensors) captured once as a CUDA graph; returns the replay.

    At batch 1 a network of this many small kernels is bound by launch overhead, which a graph
    replay removes; the inputs must stay the same tensors (copy new data into them)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def bench_inference(args, device: torch.device) -> dict:
    """Median ms of one forward pass at batch 1 (eval mode, inference_mode, same bf16/compile), and
    on CUDA the same forward replayed as a CUDA graph."""
    config = TrainConfig(arch=args.arch, size=args.size, bf16=args.bf16, compile=args.compile)
    net = build_network(config).to(device).eval()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    net.to(memory_format=layout)
    runner = compile_network(net, args.compile)
    images = [torch.rand(1, 3, args.size, args.size, device=device).contiguous(memory_format=layout)
              for _ in range(3)]
    use_bf16 = args.bf16 and device.type == "cuda"
    result = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        def forward():
            return predict(runner, *images)

        times = time_calls(forward, device, args.warmup, args.steps)
        result.update(inference_ms_b1=1000 * statistics.median(times), inference_ms_b1_min=1000 * min(times),
                      inference_method="compiled" if args.compile else "eager")
        if device.type == "cuda":
            try:
                replay = graphed(forward, device)
                graph_times = time_calls(replay, device, 2, max(args.steps, 20))
                result["inference_ms_b1_cuda_graph"] = 1000 * statistics.median(graph_times)
                if result["inference_ms_b1_cuda_graph"] < result["inference_ms_b1"]:
                    result.update(inference_ms_b1=result["inference_ms_b1_cuda_graph"],
                                  inference_ms_b1_min=1000 * min(graph_times),
                                  inference_method=result["inference_method"] + " + CUDA graph")
            except Exception as exc:  # a graph break or host sync inside the forward: report, keep eager
                result["cuda_graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"CUDA graph capture failed: {result['cuda_graph_error']}")
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} (CPU), {torch.get_num_threads()} torch thread(s)"


def mfu_text(mfu: float | None) -> str:
    """'12.34%', or 'n/a' where the device has no known peak."""
    return "n/a" if mfu is None else f"{100 * mfu:.2f}%"


def check_arch(parser: argparse.ArgumentParser, arch: str, option: str = "--arch") -> None:
    """parser.error unless ``arch`` is a registered architecture (a did-you-mean for a typo)."""
    from model.registry import list_architectures

    if arch not in list_architectures():
        parser.error(f"{option} {arch}: unknown architecture{did_you_mean(arch, list_architectures())}")


def check_size(parser: argparse.ArgumentParser, arch: str, size: int, option: str = "--size") -> None:
    """parser.error unless ``arch`` (a known name) can take ``size``² images: a multiple of its
    ``query_multiple`` and whatever its ``size_overrides`` needs; probed on the meta device (no weights)."""
    if size < 1:
        parser.error(f"{option} must be >= 1, got {size}")
    config = TrainConfig(arch=arch, size=size)
    try:
        overrides = network_overrides(config)
        with torch.device("meta"):
            probe = build_network(config, overrides=overrides)
    except ValueError as err:  # network_overrides' own message starts with "--size N: "
        message = str(err).removeprefix(f"--size {size}: ")
        parser.error(f"{option} {size}: {message}")
    multiple = int(getattr(getattr(probe, "config", None), "query_multiple", 1))
    if size % multiple:
        parser.error(f"{option} {size}: {arch} needs a size that is a multiple of {multiple}")


def check_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """``--device`` resolved (model.train.resolve_device: auto, cpu, cuda, cuda:N), or parser.error:
    not a device, CUDA without a GPU, a GPU that does not exist, a CPU index (there is one CPU device)."""
    try:
        device = resolve_device(name)
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    if device.type == "cpu" and device.index not in (None, 0):
        parser.error(f"--device {name}: torch has one CPU device (cpu or cpu:0); "
                     "use --threads to choose how many cores it uses")
    return device


def check_arguments(parser: argparse.ArgumentParser, args) -> list[int]:
    """Refuse bad options before anything is built (parser.error: one line naming the option);
    returns the batch sizes. Checks the options ``args`` has: profile_step.py shares it (one
    ``--batch``, no ``--peak-tflops``). Normalises ``--compile``/``--checkpointing`` ``off`` to ""."""
    check_arch(parser, args.arch)
    text = str(args.batch)
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch {text!r}: expected a comma list of whole numbers, e.g. 1,2,4")
    if not batches or min(batches) < 1:
        parser.error(f"--batch {text!r}: every batch size must be >= 1")
    for option, value, least in (("--size", args.size, 1), ("--steps", args.steps, 1),
                                 ("--warmup", getattr(args, "warmup", 0), 0)):
        if value < least:
            parser.error(f"{option} must be >= {least}, got {value}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1 (leave it out for torch's default), got {args.threads}")
    peak_tflops = getattr(args, "peak_tflops", None)
    if peak_tflops is not None and not peak_tflops > 0:
        parser.error(f"--peak-tflops must be > 0, got {peak_tflops}")
    if not 0.0 <= args.ema < 1.0:
        parser.error(f"--ema is a decay in [0, 1) (0 = off), got {args.ema}")
    args.compile = compile_mode(args.compile)  # the choices are checked by argparse; "off" -> ""
    args.checkpointing = checkpointing_level(args.checkpointing)
    check_size(parser, args.arch, args.size)
    return batches


def add_step_arguments(parser: argparse.ArgumentParser, *, batch_default: str, batch_help: str) -> None:
    """The options of the training step itself, shared with profile_step.py (the same names, choices
    and defaults as ``llvbench train``'s where it has them)."""
    parser.add_argument("--arch", default="genlv-tiny", help="architecture name (model.build), e.g. genlv-tiny")
    parser.add_argument("--size", type=int, default=64, help="prompt and query size in pixels")
    parser.add_argument("--batch", default=batch_default, help=batch_help)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--compile", nargs="?", const="regional", default="", choices=("off", "regional", "full"),
                        help="torch.compile: regional (default when given alone; each repeated block), full "
                             "(the whole network) or off (the default)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs")
    parser.add_argument("--checkpointing", nargs="?", const="sublayer", default="", choices=("off", "sublayer", "block"),
                        help="activation checkpointing in training: sublayer (default when given alone), block "
                             "or off (the default)")
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay (0 = off), to include its cost")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser, batch_default="1,2", batch_help="comma list of batch sizes")
    parser.add_argument("--no-inference", action="store_true", help="skip the batch-1 inference timing")
    parser.add_argument("--trace", action="store_true", help="print each step's time as it ends")
    parser.add_argument("--no-autotune", action="store_true",
                        help="cuDNN's heuristic algorithm choice instead of timing every candidate first "
                             "(genlv-base, 256², batch 8 on an H200: 48 s of warm-up with it; the cost grows with the batch)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per batch size (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--peak-tflops", type=float,
                        help="device peak for MFU (default: the GPU's dense bf16 peak when PEAK_TFLOPS knows it, "
                             "989 on an H100/H200; none on the CPU, so MFU is n/a)")
    parser.add_argument("--json", help="output JSON (default: bench-train-ARCH-SIZE.json in the current directory)")
    args = parser.parse_args(argv)
    batches = check_arguments(parser, args)
    device = check_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    autotune = apply_cuda_settings(device, autotune=not args.no_autotune)

    net = build_network(TrainConfig(arch=args.arch, size=args.size)).to(device)
    if args.peak_tflops is None:
        args.peak_tflops = known_peak_tflops(device, device_name(device))
    flops = forward_flops(net, args.size, device)
    params = sum(p.numel() for p in net.parameters())
    del net
    result = {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
              "arch": args.arch, "params": params, "size": args.size, "bf16": bool(args.bf16 and device.type == "cuda"),
              "compile": args.compile, "channels_last": args.channels_last, "checkpointing": args.checkpointing,
              "ema": args.ema, "cudnn_autotune": autotune, "peak_tflops": args.peak_tflops,
              "forward_gflops_per_sample": flops / 1e9, "timed_steps": args.steps, "warmup_steps": args.warmup,
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": []}
    print(f"{args.arch} ({params / 1e6:.2f} M params, {flops / 1e9:.1f} forward GFLOPs/sample at {args.size}²) "
          f"on {result['device']}, bf16={result['bf16']}, compile={on_off(args.compile)}, "
          f"channels_last={args.channels_last}, checkpointing={on_off(args.checkpointing)}, "
          f"cuDNN autotuning={on_off(autotune)}")
    path = args.json or f"bench-train-{args.arch}-{args.size}.json"
    print(f"{'batch':>5} {'samples/s':>10} {'step ms':>9} {'peak GiB':>9} {'TFLOP/s':>8} {'MFU':>7} {'warm-up s':>9}")
    for batch in batches:
        try:
            row = bench_batch(args, batch, device, flops)
        except torch.cuda.OutOfMemoryError:
            row = {"batch": batch, "oom": True}
            torch.cuda.empty_cache()
        result["rows"].append(row)
        if row["oom"]:
            print(f"{batch:>5} {'out of memory':>10}")
        else:
            print(f"{batch:>5} {row['samples_per_s']:>10.2f} {row['step_ms']:>9.1f} {row['peak_memory_gib']:>9.2f} "
                  f"{row['achieved_tflops']:>8.3f} {mfu_text(row['mfu']):>7} {row['warmup_s']:>9.1f}")
        atomic_write_json(path, result)  # after every row: a run cut short keeps what it measured
    if args.no_inference:
        print(f"wrote {path}")
        return result
    result.update(bench_inference(args, device))
    print(f"inference at batch 1: {result['inference_ms_b1']:.2f} ms ({result['inference_method']}, median of "
          f"{args.steps})")
    peer = peer_for(args.arch)
    if peer is not None:
        result["peer"] = peer.as_dict()
        best = max((r for r in result["rows"] if not r["oom"]), key=lambda r: r["samples_per_s"], default=None)
        same = same_device_kind(result["device"], peer)
        if best is not None:
            result["vs_peer"] = {"same_device_kind": same,
                                 "train_speedup": best["samples_per_s"] / peer.train_samples_per_s,
                                 "inference_speedup": peer.inference_ms_b1 / result["inference_ms_b1"]}
            print(f"official code on {peer.device}: {peer.train_samples_per_s} samples/s (batch {peer.batch}), "
                  f"{peer.inference_ms_b1} ms at batch 1 -> ours {result['vs_peer']['train_speedup']:.2f}x training, "
                  f"{result['vs_peer']['inference_speedup']:.2f}x inference"
                  + ("" if same else f" (NOT comparable: measured on {result['device']})"))
    atomic_write_json(path, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
