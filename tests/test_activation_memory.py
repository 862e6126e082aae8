"""benchmarks/activation_memory.py: what a training step saves for its backward, under CUDA's autocast policy."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import activation_memory  # noqa: E402


def test_emulated_policy_runs_layer_norm_softmax_and_norms_in_fp32_only_under_autocast():
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    with activation_memory.CudaAutocastExtras():
        assert F.layer_norm(x, (8,)).dtype == torch.bfloat16  # autocast off: nothing changes
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert F.layer_norm(x, (8,)).dtype == torch.float32
            assert x.softmax(-1).dtype == torch.float32
            assert torch.linalg.vector_norm(x, dim=-1).dtype == torch.float32
            assert F.normalize(x, dim=-1).dtype == torch.float32
            assert F.linear(x.float(), torch.randn(4, 8)).dtype == torch.bfloat16  # CPU autocast's own cast


@pytest.fixture(scope="module")
def tiny_levels():
    return {level: activation_memory.per_sample("genlv-tiny", 32, bf16=True, checkpointing=level)
            for level in ("", "block")}


def test_checkpointing_stores_a_fraction_of_the_activations(tiny_levels):
    full, block = tiny_levels[""]["total"], tiny_levels["block"]["total"]
    assert full > 0 and 0 < block < 0.3 * full


def test_per_sample_bytes_scale_with_the_pixel_count():
    small = activation_memory.per_sample("genlv-tiny", 32, bf16=True, checkpointing="")["total"]
    large = activation_memory.per_sample("genlv-tiny", 64, bf16=True, checkpointing="")["total"]
    assert large / small == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize("arch", ["genlv-tiny", "vit-vpip-s"])
def test_norms_save_no_fp32_copies_under_bf16_autocast(arch):
    # CUDA autocast would run layer_norm on an fp32 copy of its input (4 bytes a value, saved for
    # the backward); model.layers.layer_norm keeps the input's dtype instead, in the channel norms
    # of the X-Restormer blocks and the token norms of the PCABs, the prompt encoder and the ViT.
    ledger = activation_memory.saved_bytes(arch, 32, 2, bf16=True, checkpointing="")
    norms = [k for k in ledger.by_module_dtype if k[0] in ("ChannelNorm", "LayerNorm")]
    assert ("LayerNorm", "bfloat16") in norms
    assert not [k for k in norms if k[1] == "float32"], norms


def test_main_prints_and_writes_the_levels_and_the_backward_estimate(tmp_path, capsys):
    out = tmp_path / "memory.json"
    result = activation_memory.main(["--arch", "genlv-tiny", "--size", "32", "--scale-to", "64",
                                     "--checkpointing", "none,block", "--batch", "4", "--json", str(out)])
    none, block = result["levels"]["none"], result["levels"]["block"]
    assert none["gib_at_batch_4"] == pytest.approx(4 * none["gib_per_sample"])
    assert 0 < none["largest_sublayer"]["gib_per_sample"] < none["largest_block"]["gib_per_sample"]
    # one block recomputed at a time: more than what block checkpointing stores, far less than no checkpointing
    assert block["gib_at_batch_4"] < block["gib_at_batch_4_during_backward"] < none["gib_at_batch_4"]
    assert out.is_file() and "MiB per sample" in capsys.readouterr().out  # under 1 GiB: MiB


def test_small_figures_print_in_mib_and_the_json_stays_in_gib(tiny_levels, tmp_path, capsys):
    assert activation_memory.size_text(0.5) == "512.0 MiB" and activation_memory.size_text(7.19) == "7.190 GiB"
    out = tmp_path / "memory.json"
    result = activation_memory.main(["--arch", "genlv-tiny", "--size", "32", "--checkpointing", "none",
                                     "--batch", "2", "--rows", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "0.000 GiB" not in printed and " GiB" not in printed.split("\n", 1)[1]
    rows = [line.split() for line in printed.splitlines() if line.startswith("    ")]
    assert len(rows) == 3 and all(row[1] == "MiB" and float(row[0]) > 0 for row in rows)
    none = result["levels"]["none"]
    assert none["gib_per_sample"] == pytest.approx(tiny_levels[""]["total"] / 2**30)  # still GiB
    assert set(none) >= {"gib_per_sample", "gib_at_batch_2", "by_module_gib", "by_dtype_gib"}
    assert f"{none['gib_per_sample'] * 1024:.3f} MiB per sample" in printed


@pytest.mark.parametrize("argv, message", [
    (["--arch", "genlv-tin"], "--arch genlv-tin: unknown architecture; did you mean 'genlv-tiny'?"),
    (["--size", "33"], "--size 33: genlv-tiny needs a size that is a multiple of 32"),
    (["--arch", "promptgip", "--size", "40"], "--size 40: promptgip takes images whose side is a multiple of"),
    (["--checkpointing", "none,blok"], "--checkpointing 'none,blok': expected a comma list of none, sublayer, block"),
    (["--scale-to", "0"], "--scale-to must be >= 1, got 0"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "memory.json"
    with pytest.raises(SystemExit) as exit_info:
        activation_memory.main(["--size", "32", "--json", str(out), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
