"""benchmarks/memory_traffic.py: bytes a training step's operators move, and the speed they cap."""
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import memory_traffic  # noqa: E402
from model import layers  # noqa: E402


def test_footprint_counts_a_broadcast_dimension_once():
    x = torch.zeros(3, 1, 5)
    assert memory_traffic.footprint(x) == 15 * 4
    assert memory_traffic.footprint(x.expand(3, 7, 5)) == 15 * 4
    assert memory_traffic.footprint(x.to(torch.bfloat16).transpose(0, 2)) == 15 * 2
    assert memory_traffic.footprint(torch.zeros(0, 4)) == 0
    assert memory_traffic.footprint(None) == 0  # an absent optional argument (a bias)


class Doubler(nn.Module):
    def forward(self, x):
        return (x * 2.0).view(-1).view(x.shape)  # one kernel, two views


class Shifter(nn.Module):
    def forward(self, x):
        return x.transpose(-1, -2).relu()


def test_elementwise_ops_count_reads_and_writes_views_nothing_and_the_backward_goes_to_its_module():
    net = nn.Sequential(Doubler(), Shifter())
    x = torch.randn(4, 8, 16, requires_grad=True)
    ledger = memory_traffic.record_traffic(net, lambda: net(x).sum(), bf16=False, backward=True)
    n = x.numel() * 4
    forward = {op: v for (phase, op), v in ledger.by_op.items() if phase == "forward"}
    # mul reads x and writes 2x; relu reads and writes; sum reads and writes one scalar.
    assert forward == {"mul": 2 * n, "relu": 2 * n, "sum": n + 4}
    backward_modules = {m for (phase, m), _ in ledger.by_module.items() if phase == "backward"}
    assert {"Doubler", "Shifter"} <= backward_modules
    assert "(untagged)" not in backward_modules
    # relu's backward (threshold_backward: reads the gradient and the output, writes the gradient)
    # belongs to Shifter; the incoming gradient is sum's, one element broadcast, so it reads 4 bytes.
    assert ledger.by_pair["backward", "Shifter · threshold_backward"] == 2 * n + 4


class Gate(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, x):
        if self.fused:
            return layers.gated_gelu(x)
        gate, value = x.chunk(2, dim=1)
        return F.gelu(gate) * value


@pytest.mark.parametrize("fused", [False, True])
def test_out_buffers_are_written_not_read_and_allocations_are_free(fused):
    # GDFN's gate. Forward: gelu reads and writes h, the product reads 2h and writes h. Backward:
    # plain autograd multiplies twice (3h each), runs gelu_backward (3h) and joins the halves with
    # a cat (4h); the fused backward writes both halves into one empty_like buffer (3h + 3h + 3h).
    net = Gate(fused)
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    weight = torch.randn(2, 3, 8, 8)
    ledger = memory_traffic.record_traffic(net, lambda: (net(x) * weight).sum(), bf16=False, backward=True)
    h = x.numel() // 2 * 4
    assert ledger.by_module["forward", "Gate"] == 5 * h
    assert ledger.by_module["backward", "Gate"] == (9 if fused else 13) * h
    assert ("backward", "empty_like") not in ledger.by_op


class WindowAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 2, 16, 24))

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias.expand(3, 2, 16, 24))


def test_sdpa_is_counted_as_the_fused_kernels_and_not_as_the_cpu_fallback():
    net = WindowAttention()
    q = torch.randn(3, 2, 16, 8, requires_grad=True)
    k, v = (torch.randn(3, 2, 24, 8, requires_grad=True) for _ in range(2))
    ledger = memory_traffic.record_traffic(net, lambda: net(q, k, v).sum(), bf16=False, backward=True)
    ops = {op for _, op in ledger.by_op}
    assert "bmm" not in ops and "_softmax" not in ops and "_safe_softmax" not in ops
    qkv, out, rows = (q.numel() + k.numel() + v.numel()) * 4, q.numel() * 4, 3 * 2 * 16 * 4
    bias = net.bias.numel() * 4  # broadcast over the batch: read once
    fused = "scaled_dot_product_attention (fused)"
    assert ledger.by_op["forward", fused] == qkv + bias + out + rows
    grad_bias = 3 * 2 * 16 * 24 * 4  # the kernel writes the bias gradient at the broadcast size
    assert ledger.by_op["backward", fused] == (2 * out + rows) + (qkv + bias + out + 2 * rows) + qkv + grad_bias
    assert ledger.by_module["backward", "WindowAttention"] >= ledger.by_op["backward", fused]


def test_inference_records_no_backward():
    net = nn.Sequential(Doubler())
    ledger = memory_traffic.record_traffic(net, lambda: net(torch.randn(2, 3)), bf16=False, backward=False)
    assert {phase for phase, _ in ledger.by_op} == {"forward"}


def test_per_sample_and_per_step_costs_are_a_straight_line():
    per_sample, per_step = memory_traffic.split_costs({"a": 10 + 2 * 3, "b": 8}, {"a": 10 + 4 * 3, "b": 16}, (2, 4))
    assert per_sample == {"a": 3, "b": 4} and per_step == {"a": 10, "b": 0}
    per_sample, per_step = memory_traffic.split_costs({}, {"c": 6}, (2, 4))  # absent at batch 2: zero there
    assert per_sample == {"c": 3} and per_step == {"c": -6}


def test_ceiling_is_the_slower_of_memory_and_compute():
    bandwidth, peak = memory_traffic.GPU_SPECS["h200"]
    bound = memory_traffic.ceiling(bandwidth / 100, 0.0, 1.0, 8, "h200")  # 10 ms of bytes per sample
    assert bound["memory_ms"] == pytest.approx(80.0) and bound["samples_per_s"] == pytest.approx(100.0)
    bound = memory_traffic.ceiling(1.0, 0.0, peak / 50, 2, "h200")  # 20 ms of FLOPs per sample
    assert bound["samples_per_s"] == pytest.approx(50.0)


def test_cli_on_genlv_tiny_writes_figures_that_hang_together(tmp_path):
    out = tmp_path / "traffic.json"
    result = memory_traffic.main(["--arch", "genlv-tiny", "--size", "32", "--batch", "4", "--rows", "3",
                                  "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    per_sample = result["gb_per_sample"]
    assert per_sample["forward"] > 0 and per_sample["backward"] > per_sample["forward"]
    assert sum(result["gb_per_sample_by_operator"].values()) == pytest.approx(sum(per_sample.values()))
    assert sum(result["gb_per_sample_by_module"].values()) == pytest.approx(sum(per_sample.values()))
    # Every stored activation is written and read at least once, so eager moves more than that floor.
    assert sum(per_sample.values()) > 2 * result["stored_activation_gb_per_sample"]
    bounds = result["bounds"]
    assert bounds["eager"]["samples_per_s"] < bounds["stored activations"]["samples_per_s"]
    assert "(untagged)" not in result["gb_per_sample_by_module"]
    assert result["channels_last"] is False and result["measured_sizes"] == [32]


def test_at_size_fits_bytes_as_a_constant_plus_a_term_in_the_pixel_count():
    small, large = {"grows": 10 + 3 * 32 * 32, "fixed": 7.0}, {"grows": 10 + 3 * 64 * 64, "fixed": 7.0}
    assert memory_traffic.at_size(small, large, (32, 64), 256) == {"grows": 10 + 3 * 256 * 256, "fixed": 7.0}


def test_scale_to_reads_the_fit_at_the_larger_size_where_it_was_measured():
    # Measured at 32 and 64, read off at 64: exactly the measurement at 64.
    scaled = memory_traffic.main(["--arch", "genlv-tiny", "--size", "32", "--scale-to", "64", "--inference",
                                  "--rows", "1"])
    direct = memory_traffic.main(["--arch", "genlv-tiny", "--size", "64", "--inference", "--rows", "1"])
    assert scaled["measured_sizes"] == [32, 64]
    assert scaled["gb_per_sample"]["forward"] == pytest.approx(direct["gb_per_sample"]["forward"], rel=1e-12)
    assert sum(scaled["gb_per_sample_by_module"].values()) == pytest.approx(direct["gb_per_sample"]["forward"])


def test_convolution_backward_is_counted_per_kernel():
    # Input, weight and bias gradients: three kernels, each reading the output gradient.
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    weight = torch.randn(2, 6, 8, 8)
    ledger = memory_traffic.record_traffic(conv, lambda: (conv(x) * weight).sum(), bf16=False, backward=True)
    grad_out, inp, w = 2 * 6 * 64 * 4, x.numel() * 4, conv.weight.numel() * 4
    reads = (grad_out + w) + (grad_out + inp) + grad_out
    writes = inp + w + 6 * 4
    assert ledger.by_op["backward", "convolution_backward"] == reads + writes


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_layer_norm_of_a_permuted_map_counts_the_copy_cuda_makes_first(memory_format):
    # layers.channel_layer_norm hands F.layer_norm a permuted view: contiguous only for channels_last.
    norm = layers.ChannelNorm(8)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=memory_format).requires_grad_(True)
    weight = torch.randn(2, 8, 6, 6)
    ledger = memory_traffic.record_traffic(norm, lambda: (norm(x) * weight).sum(), bf16=False, backward=True)
    copies = {key: v for key, v in ledger.by_op.items() if key[1].startswith("contiguous copy")}
    if memory_format == torch.channels_last:
        assert copies == {}
    else:  # read and write the whole map, in the forward and again in the backward
        assert copies == {("forward", "contiguous copy in native_layer_norm"): 2 * x.numel() * 4,
                          ("backward", "contiguous copy in native_layer_norm_backward"): 2 * x.numel() * 4}


def test_overwrites_do_not_read_their_destination_and_templates_are_not_read():
    t = torch.randn(1024)
    ledger = memory_traffic.TrafficLedger(nn.Identity(), None)
    with ledger:
        torch.empty_like(t).copy_(t)
        torch.zeros_like(t)
        t.new_zeros(4)
    ledger.close()
    assert ledger.by_op["forward", "copy_"] == 2 * 4096  # read the source, write the destination
    assert ledger.by_op["forward", "zeros_like"] == 4096
    assert ledger.by_op["forward", "new_zeros"] == 16


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--arch", "genlv-tinny"], ["--scale-to", "0"]])
def test_bad_arguments_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit):
        memory_traffic.main(["--size", "32", *argv])
    assert "error" in capsys.readouterr().err
