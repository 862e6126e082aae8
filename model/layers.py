"""Building blocks shared by GenLV and the other architectures (Restormer / X-Restormer / HAT family).

Every module keeps the attribute names of the official GenLV code (``project_in``, ``qkv_dwconv``,
``rel_pos_emb.rel_height``, ``to_out.0`` ...) so that ``state_dict()`` keys equal the released
checkpoints' keys; the computations are re-expressed with fused kernels
(``F.layer_norm``, ``F.scaled_dot_product_attention``) and without per-window Python loops.

Tensor conventions: feature maps are ``B×C×H×W`` float tensors (any memory format; the channel
LayerNorm is cheapest on ``torch.channels_last``), token sequences are ``B×N×C``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Matches the eps of the official custom LayerNorms and of nn.LayerNorm's default.
LAYERNORM_EPS = 1e-5
# F.normalize's default eps (MDTA normalises q and k with it).
NORMALIZE_EPS = 1e-12


# ----------------------------------------------------------------------------- normalisation

class _NormAffine(nn.Module):
    """Holds the affine parameters of a channel LayerNorm (the ``body`` level of the official keys)."""

    def __init__(self, channels: int, with_bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
               shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """F.layer_norm over the last dims (``shape``, default the weight's); same shape and dtype out."""
    shape = tuple(weight.shape) if shape is None else tuple(shape)
    if weight is not None and x.dtype != weight.dtype and torch.is_autocast_enabled(x.device.type):
        # CUDA autocast runs layer_norm in fp32: it saves a 4-byte copy of x for the backward and
        # writes a 4-byte output that the next layer casts back to bf16 (or that turns a residual
        # stream fp32). The kernel accumulates in fp32 whatever its input, so run it in x's dtype,
        # the weights cast to it (as the CUDA kernel needs). benchmarks/activation_memory.py counts it.
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, shape, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), eps)
    return F.layer_norm(x, shape, weight, bias, eps)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and keys, same fp32 result) that keeps its input's dtype under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps, self.normalized_shape)


def is_nhwc(x: torch.Tensor) -> bool:
    """True when a B×C×H×W tensor is laid out channels-last and not also plain contiguous (C or H·W of 1)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm over dim 1 of a B×C×H×W tensor (mean-centred, biased variance); same shape and dtype out."""
    # A permute to NHWC is free for channels_last inputs and lets one fused kernel do the work.
    return layer_norm(x.permute(0, 2, 3, 1), weight, bias, LAYERNORM_EPS).permute(0, 3, 1, 2)


def channel_bias_free_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Restormer's 'BiasFree' norm over dim 1: x / sqrt(var + eps) * weight (x is NOT mean-centred)."""
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return x * torch.rsqrt(var + LAYERNORM_EPS) * weight.view(1, -1, 1, 1)


class ChannelNorm(nn.Module):
    """Restormer LayerNorm over the channels of a B×C×H×W map, 'WithBias' or 'BiasFree'."""

    def __init__(self, channels: int, kind: str = "WithBias"):
        super().__init__()
        if kind not in ("WithBias", "BiasFree"):
            raise ValueError(f"LayerNorm type must be 'WithBias' or 'BiasFree', got {kind!r}")
        self.body = _NormAffine(channels, with_bias=kind == "WithBias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.body.bias is None:
            return channel_bias_free_norm(x, self.body.weight)
        return channel_layer_norm(x, self.body.weight, self.body.bias)


# ----------------------------------------------------------------------------- feed-forward

class GatedDconvFFN(nn.Module):
    """Restormer GDFN: 1x1 expand to 2 branches, depthwise 3x3, GELU(a) * b, 1x1 project back."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        # int() truncation, exactly as the official code sizes it (48*2.66 -> 127).
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(gated_gelu(self.dwconv(self.project_in(x))))


def _plain_gradient(plain, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The gradient of ``plain(x)`` as autograd computes it, with a graph: the hand-written backward
    passes below hand double backward (a gradient penalty, say) to this."""
    with torch.enable_grad():
        return torch.autograd.grad(plain(x), x, grad, create_graph=True)[0]


def _plain_gated_gelu(x: torch.Tensor) -> torch.Tensor:
    gate, value = x.chunk(2, dim=1)
    return F.gelu(gate) * value


class _GatedGelu(torch.autograd.Function):
    """gelu(gate) * value with a backward that writes both halves' gradients into one tensor.
    Through ``chunk``, autograd joins them with a ``cat``: one more read and write of the whole
    2·hidden-channel map per GDFN (5 % of a GenLV-base training step's bytes,
    benchmarks/memory_traffic.py). Saves what autograd saves (the map and gelu(gate))."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        gate, value = x.chunk(2, dim=1)
        activated = F.gelu(gate)
        ctx.save_for_backward(x, activated)
        return activated * value

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, activated = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the plain formula's differentiable gradient
            return _plain_gradient(_plain_gated_gelu, x, grad)
        gate, value = x.chunk(2, dim=1)
        grad_x = torch.empty_like(x)
        grad_gate, grad_value = grad_x.chunk(2, dim=1)
        torch.mul(grad, activated, out=grad_value)
        torch.ops.aten.gelu_backward.grad_input(grad * value, gate, grad_input=grad_gate)
        return grad_x


def gated_gelu(x: torch.Tensor) -> torch.Tensor:
    """GDFN's gate: gelu(first half of dim 1) * second half; B×2C×H×W in, B×C×H×W out, same dtype.
    The same values and gradients as the two-line formula, which compiled code keeps (inductor
    fuses it whole) as does inference (nothing to save)."""
    if x.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
        return _GatedGelu.apply(x)
    return _plain_gated_gelu(x)


# ----------------------------------------------------------------------------- attention

class ChannelAttention(nn.Module):
    """Restormer MDTA: per-head attention across channels with L2-normalised q, k and a learned temperature."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Tokens are channels here: each head attends over its C/heads channels, features = H*W pixels.
        qkv = self.qkv_dwconv(self.qkv(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.unbind(1)
        # Plain matmuls, not SDPA: the "head width" here is H·W pixels, beyond every fused SDPA
        # kernel, and SDPA's fallback upcasts bf16 to fp32 (fp32 FFMA GEMMs and extra copies in
        # the H200 profile, results/gpu-h200). The C/heads × C/heads logits are tiny.
        # normalize(q) @ normalize(k)ᵀ = (q @ kᵀ) / (|q| |k|ᵀ): the official logits without writing
        # normalized copies of q and k (each C × H·W; under bf16 autocast F.normalize's quotient is
        # fp32 and the matmul saves a bf16 copy of it). The norms read q and k once, in fp32.
        q_norm, k_norm = row_norm(q, NORMALIZE_EPS), row_norm(k, NORMALIZE_EPS)
        logits = torch.matmul(q, k.transpose(-2, -1)) / (q_norm * k_norm.transpose(-2, -1))
        attn = (logits * self.temperature).softmax(dim=-1)
        out = torch.matmul(attn.to(v.dtype), v)
        return self.project_out(out.reshape(b, c, h, w))


class _RowNorm(torch.autograd.Function):
    """max(‖x‖₂ over the last dim, eps) in fp32, with a backward that is one multiply in x's dtype.
    For bf16 x, autograd's backward of ``vector_norm(dtype=float32)`` works on an fp32 copy of the
    whole of x (a cast, a division, a masked fill, a multiply, a cast back): in MDTA, where x is q
    or k (C × H·W per head), that was 5 % of a GenLV-base training step's bytes
    (benchmarks/memory_traffic.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
        ctx.save_for_backward(x, norm)
        ctx.eps = eps
        return norm.clamp_min(eps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, norm = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the plain formula's differentiable gradient
            return _plain_gradient(lambda t: _plain_row_norm(t, ctx.eps), x, grad), None
        # clamp_min passes the gradient where norm >= eps; d‖x‖/dx = x / ‖x‖ (0 where ‖x‖ = 0,
        # which eps > 0 already excludes). The scale is one number per row, so cast it, not x.
        scale = torch.where(norm >= ctx.eps, grad / norm, torch.zeros_like(norm))
        return x * scale.to(x.dtype), None


def _plain_row_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32).clamp_min(eps)


def row_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """max(‖x‖₂, eps) over the last dim, keepdim, in fp32 whatever x's dtype (what F.normalize divides by).
    bf16 x (autocast) gets the lean backward, whose gradient is within one bf16 ulp of autograd's;
    fp32 x keeps autograd's backward, and so does fp16, whose range the per-row scale can leave."""
    if x.dtype == torch.bfloat16 and x.requires_grad and torch.is_grad_enabled() \
            and not torch.compiler.is_compiling():
        return _RowNorm.apply(x, eps)
    return _plain_row_norm(x, eps)


def relative_index(window: int, span: int, device=None) -> torch.Tensor:
    """(window, span) int64 table: row of the (2*span-1)-row relative table for query p and key k."""
    # Key k of the halo window and query p of the inner window sit k - p - (span-window)/2 pixels
    # apart; the table is stored shifted so that index k - p + span - 1 is always in range.
    keys = torch.arange(span, device=device)
    queries = torch.arange(window, device=device)
    return keys[None, :] - queries[:, None] + (span - 1)


class RelativePositionTables(nn.Module):
    """HaloNet-style factorised relative-position embeddings: one table per axis, (2*span-1)×dim_head."""

    def __init__(self, window: int, span: int, dim_head: int):
        super().__init__()
        self.window = window
        self.span = span
        scale = dim_head ** -0.5
        self.rel_height = nn.Parameter(torch.randn(2 * span - 1, dim_head) * scale)
        self.rel_width = nn.Parameter(torch.randn(2 * span - 1, dim_head) * scale)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """Additive logits (…, window², span²) for queries q (…, window², dim_head) of a window."""
        ws, span = self.window, self.span
        idx = relative_index(ws, span, q.device)
        # Gather the small tables once, (ws, span, d), instead of gathering the large logits.
        table_h = self.rel_height[idx].to(q.dtype)
        table_w = self.rel_width[idx].to(q.dtype)
        grid = q.unflatten(-2, (ws, ws))  # (…, row, col, d)
        # Row term: matmul broadcasts over the row axis, so each query row uses its own slice of
        # the row table; the column term does the same with rows and columns swapped.
        logits_h = torch.matmul(grid, table_h.transpose(-1, -2))                      # (…, row, col, span)
        logits_w = torch.matmul(grid.transpose(-3, -2), table_w.transpose(-1, -2))    # (…, col, row, span)
        bias = logits_h.unsqueeze(-1) + logits_w.transpose(-3, -2).unsqueeze(-2)      # (…, row, col, span, span)
        return bias.flatten(-4, -3).flatten(-2, -1)


# The fused CUDA attention kernels put the batch on a grid axis capped at 65,535 blocks. genlv-base
# at batch 64, 256² has 65,536 windows, and its backward (the bias needs a gradient) failed with a
# 65,536-vs-65,535 size mismatch (H200, torch 2.11). A power of two keeps the slices even.
SDPA_MAX_BATCH = 32768


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` over (N, heads, L, d) inputs with an (N, heads, L, S) additive
    bias, in slices of at most SDPA_MAX_BATCH along N; the same result."""
    limit, n = SDPA_MAX_BATCH, q.shape[0]
    if n <= limit:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    # split, not indexing: the backward of each slice would allocate a zero gradient of the whole
    # input (with 8 slices on the CPU: 2.1x the time of fwd+bwd, +18 % peak memory); split's joins them once.
    return torch.cat([F.scaled_dot_product_attention(qi, ki, vi, attn_mask=bi, scale=scale)
                      for qi, ki, vi, bi in zip(q.split(limit), k.split(limit), v.split(limit), bias.split(limit))])


class OverlapWindowAttention(nn.Module):
    """HAT overlapping cross-attention (OCA): each window×window block of queries attends to the
    zero-padded, larger overlapping window around it, with relative-position logits added."""

    def __init__(self, dim: int, window_size: int, num_heads: int, dim_head: int, bias: bool,
                 overlap_ratio: float = 0.5):
        super().__init__()
        self.window = window_size
        self.span = int(window_size * overlap_ratio) + window_size
        self.pad = (self.span - window_size) // 2
        self.num_heads = num_heads
        self.dim_head = dim_head
        inner = dim_head * num_heads
        self.qkv = nn.Conv2d(dim, inner * 3, 1, bias=bias)
        self.project_out = nn.Conv2d(inner, dim, 1, bias=bias)
        self.rel_pos_emb = RelativePositionTables(window_size, self.span, dim_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ws, span, heads, d = self.window, self.span, self.num_heads, self.dim_head
        nh, nw = h // ws, w // ws
        q, kv = self.qkv(x).split([heads * d, 2 * heads * d], dim=1)
        # Queries: non-overlapping windows -> (B·nh·nw, heads, ws², d).
        q = (q.reshape(b, heads, d, nh, ws, nw, ws).permute(0, 3, 5, 1, 4, 6, 2)
             .reshape(b * nh * nw, heads, ws * ws, d))
        # Keys/values: span×span halo windows at stride ws over the zero-padded map (im2col, no loop).
        # F.unfold rather than Tensor.unfold on a padded map: same values, and torch.compile's CPU
        # backward of the strided-view version corrupts memory for some head widths (16: genlv).
        kv = F.unfold(kv, kernel_size=span, stride=ws, padding=self.pad)  # (b, 2·heads·d·span², nh·nw)
        # Reorder so d lands contiguous (fast SDPA kernels need it).
        kv = (kv.view(b, 2, heads, d, span * span, nh * nw).permute(1, 0, 5, 2, 4, 3)
              .reshape(2, b * nh * nw, heads, span * span, d))
        k, v = kv.unbind(0)
        scale = d ** -0.5
        # The official code adds the relative logits of the *scaled* queries; SDPA takes them as a bias.
        bias = self.rel_pos_emb(q * scale)
        out = chunked_attention(q, k, v, bias, scale)
        out = (out.reshape(b, nh, nw, heads, ws, ws, d).permute(0, 3, 6, 1, 4, 2, 5)
               .reshape(b, heads * d, h, w))
        return self.project_out(out)


class TokenAttention(nn.Module):
    """Multi-head attention on B×N×C tokens: self-attention, or cross-attention whose keys and
    values come from two other token sequences (the prompt cross-attention of GenLV)."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None):
        super().__init__()
        context_dim = dim if context_dim is None else context_dim
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        # A one-element Sequential only to keep the official key names (to_out.0.*).
        self.to_out = nn.Sequential(nn.Linear(dim, dim))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, x: torch.Tensor, key_tokens: torch.Tensor | None = None,
                value_tokens: torch.Tensor | None = None) -> torch.Tensor:
        if key_tokens is None or value_tokens is None:
            # Self-attention: one GEMM for q, k and v.
            weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])
            q, k, v = F.linear(x, weight).chunk(3, dim=-1)
        else:
            q, k, v = self.to_q(x), self.to_k(key_tokens), self.to_v(value_tokens)
        # SDPA's default scale, head_dim**-0.5, is the official (dim // heads)**-0.5.
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        return self.to_out(out.transpose(1, 2).flatten(2))
