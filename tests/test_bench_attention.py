"""benchmarks/bench_attention.py: FLOP counting of the real attention modules, scaling with size."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.layers import TokenAttention
from model.promptgip import SelfAttention

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attention.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _tokens(gen: torch.Generator, n: int, d: int) -> torch.Tensor:
    return torch.randn(1, n, d, generator=gen)


def test_cross_attention_flops_match_analytic_count(bench):
    # Nq != Nk so that swapping query and key counts would be caught.
    nq, nk, d = 20, 12, 32
    gen = torch.Generator().manual_seed(0)
    attn = TokenAttention(d, num_heads=4, context_dim=d)
    flops = bench.attention_flops(attn, (_tokens(gen, nq, d), _tokens(gen, nk, d), _tokens(gen, nk, d)))
    assert flops["core"] == 4 * nq * nk * d                  # QKᵀ (2·Nq·Nk·d) + AV (2·Nq·Nk·d)
    assert flops["proj"] == 2 * d * d * (nq + nk + nk + nq)  # to_q, to_k, to_v, to_out
    assert flops["total"] == flops["core"] + flops["proj"]
    # Meta tensors (what the script counts on) give the same figures as real ones.
    meta = bench.attention_flops(attn.to("meta"), tuple(torch.empty(1, n, d, device="meta") for n in (nq, nk, nk)))
    assert meta == flops


def test_self_attention_flops_match_analytic_count(bench):
    n, d = 17, 24
    attn = SelfAttention(d, num_heads=3)
    flops = bench.attention_flops(attn, (_tokens(torch.Generator().manual_seed(1), n, d),))
    assert flops["core"] == 4 * n * n * d
    assert flops["proj"] == 2 * n * d * 3 * d + 2 * n * d * d  # fused qkv, then proj


def test_global_attention_grows_16x_from_a_larger_base(bench):
    results = bench.measure([256, 512], repeats=0)  # FLOPs only, counted on the meta device
    small, large = (results[s]["networks"] for s in ("256", "512"))
    pca, global_ = "genlv-base PCA", "promptgip enc+dec"
    for name in (pca, global_):
        growth = large[name]["flops"]["core"] / small[name]["flops"]["core"]
        assert 15.0 < growth < 17.0, (name, growth)  # 4× the tokens -> ~16× QKᵀ + AV
    assert small[global_]["flops"]["core"] > 10 * small[pca]["flops"]["core"]
    assert large[global_]["flops"]["total"] > 10 * large[pca]["flops"]["total"]
    # Block counts come from the built networks: 4 PCABs; 24 encoder + 8 decoder ViT blocks.
    assert small[pca]["blocks"] == 4 and small[global_]["blocks"] == 32
    rows = {(r["network"], r["role"]): r for r in results["256"]["rows"]}
    assert rows[("genlv-base", "PCA (cross)")]["query_tokens"] == (256 // 8) ** 2
    assert rows[("genlv-base", "PCA (cross)")]["width"] == 384
    assert rows[("promptgip", "encoder")]["query_tokens"] == 1 + 3 * (256 // 16) ** 2
    assert rows[("promptgip", "decoder")]["query_tokens"] == 1 + 4 * (256 // 16) ** 2


def test_timing_on_cpu_and_clear_errors(bench):
    results = bench.measure([64], device="cpu", warmup=1, repeats=2,
                            genlv_arch="genlv-tiny", promptgip_arch="promptgip-fixture")
    for row in results["64"]["rows"]:
        assert row["ms_per_block"] > 0 and row["ms_per_network"] == row["ms_per_block"] * row["blocks"]
        assert row["peak_mib_per_block"] is None  # CUDA only
    with pytest.raises(ValueError, match="xrestormer"):
        bench.genlv_sites("xrestormer", 256)
    with pytest.raises(ValueError, match="multiple of 32"):
        bench.genlv_sites("genlv-base", 200)


def test_cli_writes_json(tmp_path):
    out = tmp_path / "attn.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "64", "--repeats", "1", "--warmup", "0",
                           "--genlv", "genlv-tiny", "--promptgip", "promptgip-fixture", "--json", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "PromptGIP attention cost / GenLV" in proc.stdout
    data = json.loads(out.read_text())
    assert data["sizes"] == [64] and data["torch"] == torch.__version__ and data["device"] == "cpu"
    assert data["results"]["64"]["rows"][0]["flops_per_block"]["core"] == 4 * 64 * 64 * 96  # (64/8)² tokens, dim 8·12


def test_sites_refuse_other_families_and_sizes_with_value_errors(bench):
    with pytest.raises(bench.UnsupportedSize, match="multiple of the patch size 16"):
        bench.promptgip_sites("promptgip-fixture", 40)
    with pytest.raises(ValueError, match="not a PromptGIP network"):
        bench.promptgip_sites("genlv-tiny", 64)
    with pytest.raises(ValueError, match="has no PCABs"):
        bench.genlv_sites("promptgip-fixture", 64)


@pytest.mark.parametrize("argv, message", [
    (["--genlv", "genlv-tin"], "--genlv genlv-tin: unknown architecture; did you mean 'genlv-tiny'?"),
    (["--promptgip", "promptgip-fixtur"], "--promptgip promptgip-fixtur: unknown architecture; did you mean "
                                          "'promptgip-fixture'?"),
    (["--sizes", "200"], "--sizes 200: genlv-tiny: size 200 is not a positive multiple of 32"),
    (["--sizes", "0"], "--sizes 0: genlv-tiny: size 0 is not a positive multiple of 32"),
    (["--genlv", "promptgip-fixture"], "--genlv promptgip-fixture: has no PCABs"),
    (["--promptgip", "genlv-tiny"], "--promptgip genlv-tiny: not a PromptGIP network"),
    (["--repeats", "-1"], "--repeats must be >= 0, got -1"),
])
def test_bad_options_are_one_line_errors(bench, tmp_path, capsys, argv, message):
    out = tmp_path / "attn.json"
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--sizes", "64", "--repeats", "0", "--genlv", "genlv-tiny", "--promptgip", "promptgip-fixture",
                    "--json", str(out), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
