"""ViT main networks for the VPIP backbone ablation of paper Table 1: ``vit-vpip`` and ``vit``.

The paper plugs a plain ViT into the VPIP framework (ViT-VPIP) to show that the framework is
backbone-agnostic and that X-Restormer is the better backbone; it gives no further details and
the official code does not release it, so this is our reading, kept as close to GenLV as the
backbone allows:

* main network: non-overlapping ``patch_size`` patches (8 by default, so the token grid is the
  1/8 scale at which GenLV's prompt cross-attention runs), a fixed 2-D sine-cosine position code
  (any image size, no interpolation), ``depth`` pre-norm blocks of global self-attention + MLP,
  a LayerNorm and a zero-initialised linear head back to pixels (PixelShuffle), plus the query
  (global residual: a ViT head reconstructs fine detail poorly, the residual lets it learn a
  correction, and the untrained network is the identity).
* VPIP (``use_prompt=True``): GenLV's shared residual-block prompt encoder (same weights for the
  prompt input and the prompt target, tokens at 1/8 scale, ``embed_dim`` wide) and, in the
  middle ``prompt_blocks`` blocks, a prompt cross-attention sub-layer between self-attention and
  MLP — queries from the image tokens, keys from the prompt-input tokens, values from the
  prompt-target tokens, as in GenLV's PCAB.
* ``use_prompt=False`` is the ``vit`` ablation: no prompt encoder, no cross-attention; prompt
  images are ignored.

Attention uses ``scaled_dot_product_attention`` (``model.layers.TokenAttention``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .genlv import SharedPromptEncoder, check_vpip_inputs
from .layers import LayerNorm, TokenAttention
from .registry import config_from

PROMPT_SCALE = 8  # the shared prompt encoder's tokens are at 1/8 scale (three PixelUnshuffles)


@dataclass(frozen=True)
class ViTConfig:
    """Constructor arguments of the ViT main network (defaults: the paper-scale ablation)."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 8
    use_prompt: bool = True
    prompt_blocks: int = 4          # blocks (in the middle of the stack) with prompt cross-attention
    prompt_nf: int = 64             # prompt-encoder width, as GenLV's
    prompt_res_blocks: int = 4
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim must be a multiple of 4 for the 2-D sine-cosine code, got {self.embed_dim}")
        if self.use_prompt and not 0 < self.prompt_blocks <= self.depth:
            raise ValueError(f"prompt_blocks must be in 1..depth ({self.depth}), got {self.prompt_blocks}")

    @property
    def query_multiple(self) -> int:
        """Query H and W must be multiples of this: whole patches."""
        return self.patch_size

    @property
    def prompt_multiple(self) -> int:
        """Prompt H and W must be multiples of this (the prompt encoder's three PixelUnshuffles)."""
        return PROMPT_SCALE

    @property
    def prompt_block_indices(self) -> range:
        """Which blocks carry the prompt cross-attention: the middle ``prompt_blocks`` of the stack."""
        if not self.use_prompt:
            return range(0)
        start = (self.depth - self.prompt_blocks) // 2
        return range(start, start + self.prompt_blocks)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def sincos_position_code(height: int, width: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Grid size -> (height·width)×dim fixed 2-D sine-cosine position code (MAE's, row-major tokens)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float64),
                            torch.arange(width, device=device, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (xs.reshape(-1), ys.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).to(dtype)


class ViTBlock(nn.Module):
    """Pre-norm block: self-attention, optional prompt cross-attention, MLP; each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, with_prompt: bool):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = TokenAttention(dim, heads)
        if with_prompt:
            self.norm_prompt = LayerNorm(dim)
            self.prompt_attn = TokenAttention(dim, heads, context_dim=dim)
        self.norm2 = LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor, prompt_keys: torch.Tensor | None = None,
                prompt_values: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        if prompt_keys is not None:
            tokens = tokens + self.prompt_attn(self.norm_prompt(tokens), prompt_keys, prompt_values)
        return tokens + self.mlp(self.norm2(tokens))


class ViTMainNetwork(nn.Module):
    """``model(query, prompt_input, prompt_target) -> output``: B×3×H×W float tensors.

    Query H, W must be multiples of ``patch_size``; prompt H, W multiples of 8. The prompt may have
    another size than the query.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        cfg = dataclasses.replace(config or ViTConfig(), **overrides)
        self.config = cfg
        p, dim = cfg.patch_size, cfg.embed_dim
        if cfg.use_prompt:
            self.prompt_encoder = SharedPromptEncoder(cfg.in_channels, dim, cfg.prompt_nf, cfg.prompt_res_blocks)
        self.patch_embed = nn.Conv2d(cfg.in_channels, dim, p, stride=p)
        with_prompt = set(cfg.prompt_block_indices)
        self.blocks = nn.ModuleList([ViTBlock(dim, cfg.num_heads, cfg.mlp_ratio, i in with_prompt)
                                     for i in range(cfg.depth)])
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, p * p * cfg.out_channels)
        self.unpatchify = nn.PixelShuffle(p)
        self.apply(_init_weights)
        # A zero head starts the network as the identity (output = query): training then learns
        # the correction, which keeps the first steps from destroying the image.
        nn.init.zeros_(self.head.weight)

    def check_sizes(self, query: torch.Tensor, prompt_input: torch.Tensor | None,
                    prompt_target: torch.Tensor | None) -> None:
        """Raise ValueError unless the inputs have shapes this network can process."""
        check_vpip_inputs(self.config, query, prompt_input, prompt_target, "whole patches")

    def forward(self, query: torch.Tensor, prompt_input: torch.Tensor | None = None,
                prompt_target: torch.Tensor | None = None) -> torch.Tensor:
        self.check_sizes(query, prompt_input, prompt_target)
        keys = values = None
        if self.config.use_prompt:
            keys, values = self.prompt_encoder(prompt_input, prompt_target)
        grid = self.patch_embed(query)
        b, dim, gh, gw = grid.shape
        tokens = grid.flatten(2).transpose(1, 2) + sincos_position_code(gh, gw, dim, grid.device, grid.dtype)
        with_prompt = self.config.prompt_block_indices
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, keys, values) if i in with_prompt else block(tokens)
        pixels = self.head(self.norm(tokens)).transpose(1, 2).reshape(b, -1, gh, gw)
        return query + self.unpatchify(pixels)


def _init_weights(module: nn.Module) -> None:
    """ViT/MAE initialisation: Xavier-uniform linear layers, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d) and module.kernel_size[0] > 1 and module.stride[0] == module.kernel_size[0]:
        # the patch embedding, initialised as a linear layer (MAE)
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))


def build_vit(**config) -> ViTMainNetwork:
    """Factory used by the registry: the ViT main network from ViTConfig fields."""
    return ViTMainNetwork(config_from(ViTConfig, "ViT", config))
