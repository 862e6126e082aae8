"""PromptIR (Potlapalli et al., 2023): a Restormer U-Net whose decoder mixes in learned prompts.

State-dict compatible with the authors' ``PromptIR(decoder=True)`` (``net/model.py``): same keys,
order and shapes as ``shared/reference/checkpoints/promptir.json``. The official class ties the
prompt widths to ``dim=48`` through literal channel counts; here every width is derived from
``dim`` and ``prompt_dims`` so that the official numbers come out at the official config and a
small config (``promptir-s``) is consistent too.

Interface: ``net(query)`` or ``net(query, prompt_input, prompt_target)`` -> restored query,
B×3×H×W float, H and W multiples of 8 (three 2× downsamplings). The prompt images are ignored:
PromptIR's prompts are learned parameters, not example pairs. The output is not clamped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .genlv import Downsample, PatchEmbed, Upsample
from .layers import ChannelAttention, ChannelNorm, GatedDconvFFN

# Output width of the official (never used) ``chnl_reduce3``, a literal in the authors' code.
_DEAD_REDUCE3_OUT = 256


@dataclass(frozen=True)
class PromptIRConfig:
    """Constructor arguments; defaults are the released all-in-one model, ``PromptIR(decoder=True)``."""

    in_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layernorm_type: str = "WithBias"
    prompt_dims: tuple[int, int, int] = (64, 128, 320)   # prompt1 (level 1), prompt2, prompt3 (latent)
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)    # spatial side of each learned prompt
    prompt_len: int = 5                                   # prompt components mixed per level
    dead_convs: bool = True  # the six 1x1 convs the official forward never calls (needed for a strict load)

    @property
    def query_multiple(self) -> int:
        return 8

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class RestormerBlock(nn.Module):
    """Restormer TransformerBlock: x + MDTA(LN(x)), then x + GDFN(LN(x)); official key names."""

    def __init__(self, dim: int, num_heads: int, cfg: PromptIRConfig):
        super().__init__()
        self.norm1 = ChannelNorm(dim, cfg.layernorm_type)
        self.attn = ChannelAttention(dim, num_heads, cfg.bias)
        self.norm2 = ChannelNorm(dim, cfg.layernorm_type)
        self.ffn = GatedDconvFFN(dim, cfg.ffn_expansion_factor, cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _stage(dim: int, num_heads: int, depth: int, cfg: PromptIRConfig) -> nn.Sequential:
    return nn.Sequential(*[RestormerBlock(dim, num_heads, cfg) for _ in range(depth)])


def _conv1x1(c_in: int, c_out: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=bias)


class PromptGenBlock(nn.Module):
    """Prompt generation: softmax(Linear(GAP(x))) mixes ``prompt_len`` learned maps, resized to x, conv3x3."""

    def __init__(self, prompt_dim: int, prompt_len: int, prompt_size: int, lin_dim: int):
        super().__init__()
        # U[0, 1) init as in the official code (torch.rand).
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×lin_dim×H×W features -> B×prompt_dim×H×W prompt."""
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)        # (B, len)
        components = self.prompt_param[0]                                          # (len, C, S, S)
        # One GEMM instead of the official B-fold repeat of the whole parameter tensor.
        prompt = (weights @ components.flatten(1)).view(-1, *components.shape[1:])
        # Mixing then resizing equals resizing each component then mixing (both linear).
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


class PromptIR(nn.Module):
    """Four-level Restormer U-Net; after the latent and decoder levels 3 and 2 a prompt is
    concatenated, fused by one Restormer block and projected back (the official 'noise_level' blocks)."""

    training_objective = "l1"   # model.objectives: the authors' train.py uses nn.L1Loss on the output

    @property
    def has_unused_parameters(self) -> bool:
        """True with the dead convs, which get no gradient: DistributedDataParallel must be told."""
        return self.config.dead_convs

    def __init__(self, config: PromptIRConfig | None = None):
        super().__init__()
        cfg = self.config = config or PromptIRConfig()
        d, heads, blocks, bias = cfg.dim, cfg.heads, cfg.num_blocks, cfg.bias
        p1, p2, p3 = cfg.prompt_dims
        s1, s2, s3 = cfg.prompt_sizes
        # Attribute creation order = state_dict order of the official checkpoint.
        self.patch_embed = PatchEmbed(cfg.in_channels, d, bias)
        self.prompt1 = PromptGenBlock(p1, cfg.prompt_len, s1, 2 * d)
        self.prompt2 = PromptGenBlock(p2, cfg.prompt_len, s2, 4 * d)
        self.prompt3 = PromptGenBlock(p3, cfg.prompt_len, s3, 8 * d)
        if cfg.dead_convs:
            self.chnl_reduce1 = _conv1x1(p1, p1, bias)
            self.chnl_reduce2 = _conv1x1(p2, p2, bias)
            self.chnl_reduce3 = _conv1x1(p3, _DEAD_REDUCE3_OUT, bias)
            self.reduce_noise_channel_1 = _conv1x1(d + p1, d, bias)
        self.encoder_level1 = _stage(d, heads[0], blocks[0], cfg)
        self.down1_2 = Downsample(d)
        if cfg.dead_convs:
            self.reduce_noise_channel_2 = _conv1x1(2 * d + p2, 2 * d, bias)
        self.encoder_level2 = _stage(2 * d, heads[1], blocks[1], cfg)
        self.down2_3 = Downsample(2 * d)
        if cfg.dead_convs:
            self.reduce_noise_channel_3 = _conv1x1(4 * d + _DEAD_REDUCE3_OUT, 4 * d, bias)
        self.encoder_level3 = _stage(4 * d, heads[2], blocks[2], cfg)
        self.down3_4 = Downsample(4 * d)
        self.latent = _stage(8 * d, heads[3], blocks[3], cfg)
        # Decoder. The prompt fusion blocks all use heads[2], as in the official code.
        self.up4_3 = Upsample(4 * d)                       # input is the 4d-wide fused latent
        self.reduce_chan_level3 = _conv1x1(2 * d + 4 * d, 4 * d, bias)
        self.noise_level3 = RestormerBlock(8 * d + p3, heads[2], cfg)
        self.reduce_noise_level3 = _conv1x1(8 * d + p3, 4 * d, bias)
        self.decoder_level3 = _stage(4 * d, heads[2], blocks[2], cfg)
        self.up3_2 = Upsample(4 * d)
        self.reduce_chan_level2 = _conv1x1(2 * d + 2 * d, 2 * d, bias)
        self.noise_level2 = RestormerBlock(4 * d + p2, heads[2], cfg)
        self.reduce_noise_level2 = _conv1x1(4 * d + p2, 4 * d, bias)
        self.decoder_level2 = _stage(2 * d, heads[1], blocks[1], cfg)
        self.up2_1 = Upsample(2 * d)
        self.noise_level1 = RestormerBlock(2 * d + p1, heads[2], cfg)
        self.reduce_noise_level1 = _conv1x1(2 * d + p1, 2 * d, bias)
        self.decoder_level1 = _stage(2 * d, heads[0], blocks[0], cfg)
        self.refinement = _stage(2 * d, heads[0], cfg.num_refinement_blocks, cfg)
        self.output = nn.Conv2d(2 * d, cfg.out_channels, 3, padding=1, bias=bias)

    @staticmethod
    def _with_prompt(x: torch.Tensor, prompt: PromptGenBlock, fuse: RestormerBlock, reduce: nn.Conv2d) -> torch.Tensor:
        return reduce(fuse(torch.cat([x, prompt(x)], dim=1)))

    def forward(self, query: torch.Tensor, prompt_input: torch.Tensor | None = None,
                prompt_target: torch.Tensor | None = None) -> torch.Tensor:
        """B×3×H×W (H, W multiples of 8) -> same shape; the prompt images are accepted and ignored."""
        h, w = query.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"PromptIR needs H and W multiples of 8, got {h}×{w} (pad the input first)")
        enc1 = self.encoder_level1(self.patch_embed(query))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        x = self.latent(self.down3_4(enc3))
        x = self._with_prompt(x, self.prompt3, self.noise_level3, self.reduce_noise_level3)
        x = self.reduce_chan_level3(torch.cat([self.up4_3(x), enc3], dim=1))
        x = self._with_prompt(self.decoder_level3(x), self.prompt2, self.noise_level2, self.reduce_noise_level2)
        x = self.reduce_chan_level2(torch.cat([self.up3_2(x), enc2], dim=1))
        x = self._with_prompt(self.decoder_level2(x), self.prompt1, self.noise_level1, self.reduce_noise_level1)
        # Level 1 keeps the concatenated 2d width (no 1x1 reduction), as in Restormer.
        x = torch.cat([self.up2_1(x), enc1], dim=1)
        x = self.refinement(self.decoder_level1(x))
        return self.output(x) + query


def build_promptir(**config) -> PromptIR:
    """``PromptIR`` from ``PromptIRConfig`` fields (lists from JSON configs become tuples)."""
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return PromptIR(PromptIRConfig(**config))
