"""Attention cost (paper Fig. 4): GenLV's prompt cross-attention versus PromptGIP's global attention.

    python benchmarks/bench_attention.py                                   # 256² and 512², CPU
    python benchmarks/bench_attention.py --sizes 256,512 --json results/attention-cost-cpu.json
    python benchmarks/bench_attention.py --device cuda --json results/attention-cost-cuda.json

GenLV computes attention on one image's latent, at the U-Net bottleneck only (PCABs at 1/8 scale,
8·dim channels): the PCA (paper Fig. 4) takes queries from the image latent, keys from the
prompt-input tokens and values from the prompt-target tokens; each PCAB also holds a global
self-attention over the same latent tokens (official ``XRestormer_Prompt_SpatCrossAttn``), which
is reported as a second row.  PromptGIP runs global self-attention in every ViT block over the
token sequence of several images: at inference its encoder sees cls + prompt input, prompt target
and query (the answer is masked), its decoder cls + all four images.

The attention modules are the project's own, taken from ``model.build(arch)`` networks built on
the meta device (no weights, no compute), so block counts and widths are those of our code.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one forward of the
attention module (batch 1), with SDPA forced onto its math path: FlopCounterMode has no formula
for the CPU flash kernel (it counts 0), while the math path is plain batched matmuls.  FLOPs are
matmul FLOPs (2 per multiply-add): ``core`` = QKᵀ + AV = 4·Nq·Nk·d, ``proj`` = the q/k/v/out
linear layers; softmax, scaling and biases are not counted.  They do not depend on the device.
Times are the median forward of one attention module at batch 1 on ``--device`` (float32 on CPU,
bf16 autocast on CUDA; default SDPA backend), after warmup; the per-network time is that median
times the number of blocks (an estimate, not a measured network run).  Figures, not a test.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import model  # noqa: E402
from bench_train import check_arch  # noqa: E402
from model.genlv import LEVELS, PromptCrossAttentionBlock  # noqa: E402
from model.promptgip import NUM_IMAGES, PromptGIP, SelfAttention  # noqa: E402

GENLV_ARCH = "genlv-base"
PROMPTGIP_ARCH = "promptgip"
CORE_OPS = frozenset({"aten.bmm", "aten.baddbmm"})       # QKᵀ and AV on the SDPA math path
PROJECTION_OPS = frozenset({"aten.mm", "aten.addmm"})    # nn.Linear / F.linear on token matrices


@dataclass(frozen=True)
class AttentionSite:
    """One kind of attention in a network: its module, input token counts and how many blocks hold it."""

    network: str                 # registry name, e.g. "genlv-base"
    role: str                    # what the attention is, e.g. "PCA (cross)"
    module: nn.Module            # the attention module of the first such block (meta device)
    query_tokens: int
    key_tokens: int              # == query_tokens for self-attention
    cross: bool                  # forward(x, keys, values) instead of forward(x)
    blocks: int                  # attention modules of this kind in the network

    @property
    def width(self) -> int:
        return _width(self.module)

    @property
    def heads(self) -> int:
        return self.module.num_heads


class UnsupportedSize(ValueError):
    """The network cannot take the requested image size (raised by genlv_sites / promptgip_sites)."""


def _width(module: nn.Module) -> int:
    """Token width of an attention module (input features of its query projection)."""
    first = module.to_q if hasattr(module, "to_q") else module.qkv
    return first.in_features


def _build_meta(arch: str) -> nn.Module:
    """``model.build(arch)`` on the meta device: real module structure, no storage, instant."""
    with torch.device("meta"):
        return model.build(arch)


def genlv_sites(arch: str, size: int) -> list[AttentionSite]:
    """PCAB attentions of GenLV ``arch`` for a size×size query with a size×size prompt."""
    net = _build_meta(arch)
    scale = 2 ** (LEVELS - 1)
    if not getattr(net.config, "use_prompt", False) or not hasattr(net, "latent_blocks"):
        raise ValueError(f"{arch}: has no PCABs (not a GenLV network with use_prompt=True), so no prompt "
                         "cross-attention to measure")
    if size < 1 or size % net.config.query_multiple:
        raise UnsupportedSize(f"{arch}: size {size} is not a positive multiple of {net.config.query_multiple}")
    blocks = [m for m in net.modules() if isinstance(m, PromptCrossAttentionBlock)]
    if len(blocks) != len(net.latent_blocks):
        raise RuntimeError(f"{arch}: found {len(blocks)} PCABs, {len(net.latent_blocks)} at the bottleneck")
    tokens = (size // scale) ** 2  # bottleneck latent of the query; the prompt tokens are as many
    first = blocks[0]
    return [AttentionSite(arch, "PCA (cross)", first.cross_attn, tokens, tokens, True, len(blocks)),
            AttentionSite(arch, "PCAB self", first.spatial_attn, tokens, tokens, False, len(blocks))]


def promptgip_sites(arch: str, size: int) -> list[AttentionSite]:
    """Global self-attentions of PromptGIP ``arch`` at inference on size×size images."""
    net = _build_meta(arch)
    if not isinstance(net, PromptGIP):
        raise ValueError(f"{arch}: not a PromptGIP network ({type(net).__name__}), so no encoder and decoder "
                         "global attention to measure")
    patch = net.config.patch_size
    if size < 1 or size % patch:
        raise UnsupportedSize(f"{arch}: size {size} is not a positive multiple of the patch size {patch}")
    patches = (size // patch) ** 2
    # Attention only: sizes above POS_TABLE_SIDE cannot run the whole network, but the attention
    # module just sees a longer token sequence.
    encoder_tokens = 1 + (NUM_IMAGES - 1) * patches   # cls + the three visible images
    decoder_tokens = 1 + NUM_IMAGES * patches         # cls + all four, answer as mask tokens
    total = sum(isinstance(m, SelfAttention) for m in net.modules())
    if total != len(net.blocks) + len(net.decoder_blocks):
        raise RuntimeError(f"{arch}: {total} attention modules, expected encoder + decoder blocks")
    return [AttentionSite(arch, "encoder", net.blocks[0].attn, encoder_tokens, encoder_tokens, False,
                          len(net.blocks)),
            AttentionSite(arch, "decoder", net.decoder_blocks[0].attn, decoder_tokens, decoder_tokens, False,
                          len(net.decoder_blocks))]


def site_inputs(site: AttentionSite, device: str | torch.device,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Batch-1 float32 token tensors for ``site.module``: (x,) or (x, keys, values); N(0,1) if a
    generator is given, else empty (meta)."""
    shapes = [(1, site.query_tokens, site.width)]
    if site.cross:
        shapes += [(1, site.key_tokens, site.width)] * 2
    if generator is None:
        return tuple(torch.empty(s, device=device) for s in shapes)
    return tuple(torch.randn(s, generator=generator).to(device) for s in shapes)


def attention_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Matmul FLOPs of one ``module(*inputs)``: {"core": QKᵀ+AV, "proj": linears, "total"}; any device."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    unknown = sorted(set(by_op) - CORE_OPS - PROJECTION_OPS)
    if unknown:
        raise RuntimeError(f"{type(module).__name__}: FLOPs from unexpected ops {unknown}")
    core = sum(n for op, n in by_op.items() if op in CORE_OPS)
    if core == 0:
        raise RuntimeError(f"{type(module).__name__}: FlopCounterMode counted no attention matmuls")
    proj = sum(n for op, n in by_op.items() if op in PROJECTION_OPS)
    return {"core": core, "proj": proj, "total": core + proj}


def _materialize(module: nn.Module, device: str, generator: torch.Generator) -> nn.Module:
    """A copy of a meta-device module on ``device`` with N(0, 0.02²) weights (drawn on the CPU)."""
    real = copy.deepcopy(module).to_empty(device=device)
    with torch.no_grad():
        for param in real.parameters():
            param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return real.eval()


def _synchronize(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def time_attention(module: nn.Module, inputs: tuple[torch.Tensor, ...], device: str,
                   warmup: int, repeats: int) -> dict[str, float | None]:
    """Median forward time (ms) of ``module(*inputs)`` and, on CUDA, its peak extra memory (MiB)."""
    sync = _synchronize(device)
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            module(*inputs)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(*inputs)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
        peak = None
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            module(*inputs)
            sync()
            peak = (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
    return {"ms": statistics.median(times) if times else None, "peak_mib": peak}


def measure_site(site: AttentionSite, device: str, warmup: int, repeats: int, seed: int = 0) -> dict:
    """FLOPs (meta device) and, if repeats > 0, timing on ``device`` of one attention site."""
    flops = attention_flops(site.module, site_inputs(site, "meta"))
    row = {"network": site.network, "role": site.role, "query_tokens": site.query_tokens,
           "key_tokens": site.key_tokens, "width": site.width, "heads": site.heads, "blocks": site.blocks,
           "flops_per_block": flops,
           "flops_per_network": {k: v * site.blocks for k, v in flops.items()},
           "ms_per_block": None, "ms_per_network": None, "peak_mib_per_block": None}
    if repeats > 0:
        generator = torch.Generator().manual_seed(seed)
        module = _materialize(site.module, device, generator)
        timing = time_attention(module, site_inputs(site, device, generator), device, warmup, repeats)
        row.update(ms_per_block=timing["ms"], ms_per_network=timing["ms"] * site.blocks,
                   peak_mib_per_block=timing["peak_mib"])
    return row


def _network_sum(rows: list[dict], network: str, roles: tuple[str, ...]) -> dict:
    """Per-network totals (FLOPs and estimated ms) over the rows of ``network`` with ``roles``."""
    picked = [r for r in rows if r["network"] == network and r["role"] in roles]
    flops = {k: sum(r["flops_per_network"][k] for r in picked) for k in ("core", "proj", "total")}
    times = [r["ms_per_network"] for r in picked]
    return {"flops": flops, "ms": sum(times) if None not in times else None,
            "blocks": sum(r["blocks"] for r in picked)}


def measure(sizes: list[int], device: str = "cpu", warmup: int = 2, repeats: int = 5,
            genlv_arch: str = GENLV_ARCH, promptgip_arch: str = PROMPTGIP_ARCH) -> dict:
    """All figures for ``sizes``: per-site rows, per-network totals and PromptGIP / GenLV ratios."""
    results = {}
    for size in sizes:
        sites = genlv_sites(genlv_arch, size) + promptgip_sites(promptgip_arch, size)
        rows = [measure_site(s, device, warmup, repeats) for s in sites]
        networks = {
            f"{genlv_arch} PCA": _network_sum(rows, genlv_arch, ("PCA (cross)",)),
            f"{genlv_arch} PCAB self+cross": _network_sum(rows, genlv_arch, ("PCA (cross)", "PCAB self")),
            f"{promptgip_arch} enc+dec": _network_sum(rows, promptgip_arch, ("encoder", "decoder")),
        }
        global_ = networks[f"{promptgip_arch} enc+dec"]
        ratios = {name: {"core": global_["flops"]["core"] / net["flops"]["core"],
                         "total": global_["flops"]["total"] / net["flops"]["total"],
                         "ms": global_["ms"] / net["ms"] if net["ms"] else None}
                  for name, net in networks.items() if net is not global_}
        results[str(size)] = {"rows": rows, "networks": networks, "promptgip_over": ratios}
    return results


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    import platform
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {threads} thread{'s' if threads != 1 else ''}"


def _g(flops: int) -> str:
    return f"{flops / 1e9:.3f}"


def _ms(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f}"


def format_table(results: dict) -> str:
    """Plain-text tables: per block, per network, ratios (GFLOPs = 1e9 matmul FLOPs)."""
    lines = []
    head = (f"{'size':>5} {'network':<11} {'attention':<12} {'Nq×Nk':>11} {'dim':>5} {'heads':>5} "
            f"{'blocks':>6} {'GF core':>9} {'GF +proj':>9} {'ms/block':>9} {'MiB':>7}")
    lines += ["per block (one attention module, batch 1)", head, "-" * len(head)]
    for size, res in results.items():
        for r in res["rows"]:
            mib = "-" if r["peak_mib_per_block"] is None else f"{r['peak_mib_per_block']:.1f}"
            lines.append(f"{size:>5} {r['network']:<11} {r['role']:<12} "
                         f"{str(r['query_tokens']) + '×' + str(r['key_tokens']):>11} {r['width']:>5} "
                         f"{r['heads']:>5} {r['blocks']:>6} {_g(r['flops_per_block']['core']):>9} "
                         f"{_g(r['flops_per_block']['total']):>9} {_ms(r['ms_per_block']):>9} {mib:>7}")
    head = f"{'size':>5} {'network attention':<29} {'blocks':>6} {'GF core':>10} {'GF +proj':>10} {'ms (est.)':>10}"
    lines += ["", "per network (blocks × per block; ms = median ms/block × blocks)", head, "-" * len(head)]
    for size, res in results.items():
        for name, net in res["networks"].items():
            lines.append(f"{size:>5} {name:<29} {net['blocks']:>6} {_g(net['flops']['core']):>10} "
                         f"{_g(net['flops']['total']):>10} {_ms(net['ms']):>10}")
    lines += ["", "PromptGIP attention cost / GenLV attention cost (per network)"]
    for size, res in results.items():
        for name, ratio in res["promptgip_over"].items():
            ms = "-" if ratio["ms"] is None else f"{ratio['ms']:.1f}×"
            lines.append(f"{size:>5} vs {name:<29} FLOPs core {ratio['core']:5.1f}×  +proj {ratio['total']:5.1f}×"
                         f"  time {ms:>6}")
    return "\n".join(lines)


def check_arguments(parser: argparse.ArgumentParser, args) -> list[int]:
    """Refuse bad options before anything is measured (parser.error, one line; architecture names
    checked as bench_train.py does); returns the sizes."""
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes:
        parser.error(f"--sizes must name at least one size, got {args.sizes!r}")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if not cuda and args.device != "cpu":
        parser.error(f"--device must be cpu or cuda[:n], got {args.device!r}")
    for option, value in (("--warmup", args.warmup), ("--repeats", args.repeats), ("--threads", args.threads)):
        if value is not None and value < 0:
            parser.error(f"{option} must be >= 0, got {value}")
    for option, arch, sites in (("--genlv", args.genlv, genlv_sites), ("--promptgip", args.promptgip, promptgip_sites)):
        check_arch(parser, arch, option)
        for size in sizes:
            try:
                sites(arch, size)
            except UnsupportedSize as err:
                parser.error(f"--sizes {size}: {err}")
            except ValueError as err:  # not of the family the option is for
                parser.error(f"{option} {arch}: {str(err).removeprefix(f'{arch}: ')}")
    return sizes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512",
                        help="comma-separated square image sizes (multiples of both networks' size step: "
                             "32 for GenLV, the patch size 16 for PromptGIP)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n] (bf16 autocast on cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed forwards (default 2 cpu, 10 cuda)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed forwards, median reported (default 5 cpu, 50 cuda; 0: FLOPs only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--genlv", default=GENLV_ARCH, help="GenLV registry name")
    parser.add_argument("--promptgip", default=PROMPTGIP_ARCH, help="PromptGIP registry name")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sizes = check_arguments(parser, args)
    cuda = args.device.startswith("cuda")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    repeats = args.repeats if args.repeats is not None else (50 if cuda else 5)

    results = measure(sizes, args.device, warmup, repeats, args.genlv, args.promptgip)
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; "
          f"{'bf16 autocast' if cuda else 'float32'}; warmup {warmup}, median of {repeats}")
    print(format_table(results))
    if args.json:
        from taskgen.atomic import atomic_write_json
        atomic_write_json(args.json, {
            "benchmark": "attention cost (paper Fig. 4)", "device": args.device,
            "device_name": device_name(args.device), "torch": torch.__version__,
            "dtype": "bf16 autocast" if cuda else "float32", "threads": torch.get_num_threads(),
            "sizes": sizes, "warmup": warmup, "repeats": repeats, "batch": 1,
            "flops_note": "matmul FLOPs, 2 per multiply-add; core = QK^T + AV, proj = q/k/v/out linears",
            "results": results})
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
