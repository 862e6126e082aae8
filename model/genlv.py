"""GenLV (VPIP framework with an X-Restormer main network), state-dict compatible with the official code.

Layout (paper §3.3; official ``XRestormer_Prompt_SpatCrossAttn``):

* main network: a 4-level X-Restormer U-Net.  Every block is a TSAB (Restormer MDTA channel
  attention + GDFN) followed by an SSAB (HAT overlapping window attention with relative positions
  + GDFN).  Down/up sampling is conv3x3 + PixelUnshuffle/PixelShuffle; skips are concatenated.
  Level 1 of the decoder and the refinement blocks run at 2·dim, and the output conv has no
  global residual (the "wores" variant).
* bottleneck (1/8 scale, 8·dim channels): PCABs — MDTA + GDFN, then on tokens global
  self-attention, prompt cross-attention (Q from the image latent, K from the prompt-input
  embedding, V from the prompt-target embedding), a post-LayerNorm and a GDFN without pre-norm.
* prompt encoder: conv stem + 3 × (4 residual blocks, PixelUnshuffle, 1x1 reduce, LayerNorm),
  one set of weights applied to both prompt images, giving 8·dim-wide tokens at 1/8 scale.

``use_prompt=False`` gives the no-prompt ablation of paper Table 1 (``xrestormer``): no prompt
encoder, X-Restormer blocks at the bottleneck, optional global residual; prompts are ignored.

The network is colour-agnostic (it maps tensors to tensors).  Our own models are trained on RGB;
the official weights expect BGR, which :mod:`model.checkpoints` handles in a wrapper.
Attribute names (including ``Prompt_KV_Encoder``) are the official ones so keys match.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .layers import (ChannelAttention, ChannelNorm, GatedDconvFFN, LayerNorm, OverlapWindowAttention,
                     TokenAttention, is_nhwc)
from .registry import config_from

LEVELS = 4  # resolution levels of the U-Net: 1, 1/2, 1/4, 1/8


@dataclass(frozen=True)
class GenLVConfig:
    """Constructor arguments of GenLV; defaults are the paper's base model (conference code, nf=64)."""

    dim: int = 48
    num_blocks: tuple[int, ...] = (2, 4, 4, 4)
    num_refinement_blocks: int = 4
    heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 8
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layernorm_type: str = "WithBias"
    prompt_nf: int = 64            # prompt-encoder width: 64 in the conference code, 32 in GenLV-101
    prompt_res_blocks: int = 4     # residual blocks per prompt-encoder level
    spatial_dim_head: int = 16     # head width of the overlapping window attention
    overlap_ratio: float = 0.5
    in_channels: int = 3
    out_channels: int = 3
    # Ablations (paper Table 1): use_prompt=False is the plain X-Restormer main network, whose
    # bottleneck holds X-Restormer blocks instead of PCABs and which ignores the prompt.
    use_prompt: bool = True
    global_residual: bool = False  # output + query, as the original X-Restormer; GenLV has none
    # Not in the official code: images enter as x*(1-2o)+o and the output is mapped back, so no pixel
    # is exactly black. The bias-free patch embedding sends black to the zero vector, which a
    # LayerNorm turns into its bias alone, while every other flat grey gives one shared direction:
    # 0 is a singular input (docs/model.md). 0 = the official function.
    input_offset: float = 0.0

    def __post_init__(self):
        # Accept lists (JSON/YAML) but store tuples so configs stay hashable and comparable.
        object.__setattr__(self, "num_blocks", tuple(self.num_blocks))
        object.__setattr__(self, "heads", tuple(self.heads))
        if len(self.num_blocks) != LEVELS or len(self.heads) != LEVELS:
            raise ValueError(f"num_blocks and heads need {LEVELS} entries (levels 1, 1/2, 1/4, 1/8)")
        if not 0.0 <= self.input_offset < 0.5:
            raise ValueError(f"input_offset must be in [0, 0.5) (a share of full scale), got {self.input_offset}")
        for level, heads in enumerate(self.heads):
            if (self.dim << level) % heads:
                raise ValueError(f"level {level + 1}: width {self.dim << level} is not divisible by {heads} heads")

    @property
    def query_multiple(self) -> int:
        """Query H and W must be multiples of this: windows tile every scale that has window attention
        (1, 1/2, 1/4; also 1/8 without the prompt, where X-Restormer blocks replace the PCABs)."""
        return self.window_size * 2 ** (LEVELS - 2 if self.use_prompt else LEVELS - 1)

    @property
    def prompt_multiple(self) -> int:
        """Prompt H and W must be multiples of this: three PixelUnshuffles."""
        return 2 ** (LEVELS - 1)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ----------------------------------------------------------------------------- main network blocks

def pre_norm_sublayer(layer: nn.Module, norm: nn.Module, x: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    """``layer(norm(x))``; with ``checkpointed`` (and autograd on) its activations are recomputed in
    backward instead of stored: full-resolution blocks at dim 96 store ~0.8 GB per 256² sample."""
    if checkpointed and torch.is_grad_enabled():
        return activation_checkpoint(lambda t: layer(norm(t)), x, use_reentrant=False)
    return layer(norm(x))


class DualAttentionBlock(nn.Module):
    """X-Restormer block: TSAB (MDTA + GDFN) then SSAB (overlapping window attention + GDFN), pre-norm."""

    def __init__(self, dim: int, heads: int, cfg: GenLVConfig):
        super().__init__()
        # Registration order = official state_dict order.
        self.channel_attn = ChannelAttention(dim, heads, cfg.bias)
        self.spatial_attn = OverlapWindowAttention(dim, cfg.window_size, heads, cfg.spatial_dim_head,
                                                   cfg.bias, cfg.overlap_ratio)
        self.norm1 = ChannelNorm(dim, cfg.layernorm_type)
        self.norm2 = ChannelNorm(dim, cfg.layernorm_type)
        self.norm3 = ChannelNorm(dim, cfg.layernorm_type)
        self.norm4 = ChannelNorm(dim, cfg.layernorm_type)
        self.channel_ffn = GatedDconvFFN(dim, cfg.ffn_expansion_factor, cfg.bias)
        self.spatial_ffn = GatedDconvFFN(dim, cfg.ffn_expansion_factor, cfg.bias)

    # Set by model.train.enable_activation_checkpointing: "" (off), "sublayer" (recompute each
    # sub-layer in backward: 4 stored inputs per block) or "block" (store only the block's input;
    # its recomputation checkpoints the sub-layers again, so peak memory is one sub-layer's).
    checkpointed = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed == "block" and torch.is_grad_enabled():
            return activation_checkpoint(self._sublayers, x, True, use_reentrant=False)
        return self._sublayers(x, self.checkpointed == "sublayer")

    def _sublayers(self, x: torch.Tensor, checkpoint_each: bool) -> torch.Tensor:
        x = x + pre_norm_sublayer(self.channel_attn, self.norm1, x, checkpoint_each)
        x = x + pre_norm_sublayer(self.channel_ffn, self.norm2, x, checkpoint_each)
        x = x + pre_norm_sublayer(self.spatial_attn, self.norm3, x, checkpoint_each)
        return x + pre_norm_sublayer(self.spatial_ffn, self.norm4, x, checkpoint_each)


class PromptCrossAttentionBlock(nn.Module):
    """PCAB: MDTA + GDFN, then global self-attention, prompt cross-attention, post-norm and GDFN."""

    def __init__(self, dim: int, heads: int, cfg: GenLVConfig):
        super().__init__()
        self.channel_attn = ChannelAttention(dim, heads, cfg.bias)
        self.spatial_attn = TokenAttention(dim, heads)
        self.cross_attn = TokenAttention(dim, heads, context_dim=dim)
        self.norm1 = ChannelNorm(dim, cfg.layernorm_type)
        self.norm2 = ChannelNorm(dim, cfg.layernorm_type)
        self.norm3 = LayerNorm(dim)
        self.norm4 = LayerNorm(dim)
        self.norm5 = LayerNorm(dim)
        self.channel_ffn = GatedDconvFFN(dim, cfg.ffn_expansion_factor, cfg.bias)
        self.spatial_ffn = GatedDconvFFN(dim, cfg.ffn_expansion_factor, cfg.bias)

    def forward(self, x: torch.Tensor, prompt_keys: torch.Tensor, prompt_values: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if is_nhwc(x) else torch.contiguous_format
        x = x + self.channel_attn(self.norm1(x))
        x = x + self.channel_ffn(self.norm2(x))
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.spatial_attn(self.norm3(tokens))
        tokens = tokens + self.cross_attn(self.norm4(tokens), prompt_keys, prompt_values)
        # Official order: the last norm is applied to the residual stream itself, and the GDFN
        # that follows has no norm of its own. The tokens come back as an NHWC-strided view; give
        # the block's output its input's layout, so the next PCAB meets the strides the first one
        # did (torch.compile would otherwise build a second PCAB graph for NHWC strides).
        x = self.norm5(tokens).transpose(1, 2).reshape(b, c, h, w).contiguous(memory_format=layout)
        return x + self.spatial_ffn(x)


class PatchEmbed(nn.Module):
    """3x3 conv from image channels to the stem width (overlapped patch embedding)."""

    def __init__(self, in_channels: int, dim: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve H, W and double C: conv3x3 to C/2 then PixelUnshuffle(2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double H, W and halve C: conv3x3 to 2C then PixelShuffle(2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ----------------------------------------------------------------------------- prompt encoder

class ResidualBlock(nn.Module):
    """EDSR/BasicSR residual block without BN: x + conv3x3(ReLU(conv3x3(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    checkpointed = ""  # see DualAttentionBlock; either level recomputes the residual branch

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled():
            return x + activation_checkpoint(self._branch, x, use_reentrant=False)
        return x + self._branch(x)


def _norm_channels(norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """Apply a token LayerNorm over the channels of a B×C×H×W map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PromptEncoder(nn.Module):
    """Residual-block CNN mapping a B×3×H×W prompt image to B×(H/8·W/8)×prompt_dim tokens."""

    def __init__(self, in_channels: int, prompt_dim: int, nf: int, res_blocks: int):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.norm = LayerNorm(nf)
        # Each level: residual blocks at width nf·2^l, unshuffle (×4 channels), 1x1 to nf·2^(l+1).
        # setattr keeps the official names and their interleaved state_dict order.
        for level in range(1, LEVELS):
            width = nf << (level - 1)
            setattr(self, f"fea_level{level}", nn.Sequential(*[ResidualBlock(width) for _ in range(res_blocks)]))
            setattr(self, f"pixel_unshuffle{level}", nn.PixelUnshuffle(2))
            setattr(self, f"channel_reduction{level}", nn.Conv2d(4 * width, 2 * width, 1))
            setattr(self, f"norm{level}", LayerNorm(2 * width))
        self.conv_lr = nn.Conv2d(nf << (LEVELS - 1), prompt_dim, 3, padding=1)
        self.conv_last = nn.Conv2d(prompt_dim, prompt_dim, 1)
        self.norm_out = LayerNorm(prompt_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = _norm_channels(self.norm, self.conv_hr(F.gelu(self.conv_first(x))))
        for level in range(1, LEVELS):
            fea = F.gelu(getattr(self, f"fea_level{level}")(fea))
            fea = F.gelu(getattr(self, f"channel_reduction{level}")(getattr(self, f"pixel_unshuffle{level}")(fea)))
            fea = _norm_channels(getattr(self, f"norm{level}"), fea)
        out = self.conv_last(F.gelu(self.conv_lr(fea)))
        return self.norm_out(out.flatten(2).transpose(1, 2))


class SharedPromptEncoder(nn.Module):
    """Encodes prompt input and prompt target with the same PromptEncoder (one batched pass)."""

    def __init__(self, in_channels: int, prompt_dim: int, nf: int, res_blocks: int):
        super().__init__()
        self.prompt_embedding = PromptEncoder(in_channels, prompt_dim, nf, res_blocks)

    def forward(self, prompt_input: torch.Tensor, prompt_target: torch.Tensor):
        keys, values = self.prompt_embedding(torch.cat([prompt_input, prompt_target])).chunk(2)
        return keys, values


# ----------------------------------------------------------------------------- input checks

def check_vpip_inputs(cfg, query: torch.Tensor, prompt_input: torch.Tensor | None,
                      prompt_target: torch.Tensor | None, query_rule: str) -> None:
    """Shapes a VPIP network (GenLV, ViT-VPIP) can process, else ValueError saying what to fix.

    ``cfg`` has ``in_channels``, ``use_prompt``, ``query_multiple`` and ``prompt_multiple``;
    ``query_rule`` says why the query multiple is what it is.
    """
    if query.dim() != 4 or query.shape[1] != cfg.in_channels:
        raise ValueError(f"query must be B×{cfg.in_channels}×H×W, got {tuple(query.shape)}")
    qh, qw = query.shape[-2:]
    if qh % cfg.query_multiple or qw % cfg.query_multiple:
        raise ValueError(f"query H and W must be multiples of {cfg.query_multiple} ({query_rule}), "
                         f"got {qh}×{qw}; pad or resize first")
    if not cfg.use_prompt:
        return
    if prompt_input is None or prompt_target is None:
        raise ValueError("this model needs prompt_input and prompt_target")
    for name, t in (("prompt_input", prompt_input), ("prompt_target", prompt_target)):
        if t.dim() != 4 or t.shape[1] != cfg.in_channels:
            raise ValueError(f"{name} must be B×{cfg.in_channels}×H×W, got {tuple(t.shape)}")
    if prompt_input.shape != prompt_target.shape:
        raise ValueError(f"prompt_input {tuple(prompt_input.shape)} and prompt_target "
                         f"{tuple(prompt_target.shape)} must have the same shape")
    if prompt_input.shape[0] != query.shape[0]:
        raise ValueError(f"batch sizes differ: query {query.shape[0]}, prompt {prompt_input.shape[0]}")
    ph, pw = prompt_input.shape[-2:]
    if ph % cfg.prompt_multiple or pw % cfg.prompt_multiple:
        raise ValueError(f"prompt H and W must be multiples of {cfg.prompt_multiple} (three "
                         f"PixelUnshuffles), got {ph}×{pw}; pad or resize first")


# ----------------------------------------------------------------------------- GenLV

class GenLV(nn.Module):
    """GenLV: ``model(query, prompt_input, prompt_target) -> output``, all B×3×H×W float tensors.

    Query H, W must be multiples of ``config.query_multiple`` (32 by default), prompt H, W of
    ``config.prompt_multiple`` (8); the prompt size may differ from the query size.
    """

    # Repeated blocks that ``torch.compile`` handles one at a time (model.train.compile_network).
    # Not the prompt encoder's ResidualBlock: its two convolutions are library kernels compiled or
    # not, with one pointwise op between them and one after either way: nothing to fuse, and its
    # three widths were three of a training step's eight graphs.
    compile_regions = (DualAttentionBlock, PromptCrossAttentionBlock)

    def __init__(self, config: GenLVConfig | None = None, **overrides):
        super().__init__()
        cfg = dataclasses.replace(config or GenLVConfig(), **overrides)
        self.config = cfg
        dims = [cfg.dim << level for level in range(LEVELS)]

        def stage(width: int, heads: int, depth: int) -> nn.Sequential:
            return nn.Sequential(*[DualAttentionBlock(width, heads, cfg) for _ in range(depth)])

        # Registration order below is the official state_dict order.
        if cfg.use_prompt:
            self.Prompt_KV_Encoder = SharedPromptEncoder(cfg.in_channels, dims[3], cfg.prompt_nf, cfg.prompt_res_blocks)
        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.dim, cfg.bias)
        self.encoder_level1 = stage(dims[0], cfg.heads[0], cfg.num_blocks[0])
        self.down1_2 = Downsample(dims[0])
        self.encoder_level2 = stage(dims[1], cfg.heads[1], cfg.num_blocks[1])
        self.down2_3 = Downsample(dims[1])
        self.encoder_level3 = stage(dims[2], cfg.heads[2], cfg.num_blocks[2])
        self.down3_4 = Downsample(dims[2])
        if cfg.use_prompt:
            self.latent_blocks = nn.ModuleList(
                [PromptCrossAttentionBlock(dims[3], cfg.heads[3], cfg) for _ in range(cfg.num_blocks[3])])
        else:
            self.latent = stage(dims[3], cfg.heads[3], cfg.num_blocks[3])
        self.up4_3 = Upsample(dims[3])
        self.reduce_chan_level3 = nn.Conv2d(dims[3], dims[2], 1, bias=cfg.bias)
        self.decoder_level3 = stage(dims[2], cfg.heads[2], cfg.num_blocks[2])
        self.up3_2 = Upsample(dims[2])
        self.reduce_chan_level2 = nn.Conv2d(dims[2], dims[1], 1, bias=cfg.bias)
        self.decoder_level2 = stage(dims[1], cfg.heads[1], cfg.num_blocks[1])
        self.up2_1 = Upsample(dims[1])
        # Level 1 of the decoder keeps the concatenated 2·dim width (no channel reduction).
        self.decoder_level1 = stage(dims[1], cfg.heads[0], cfg.num_blocks[0])
        self.refinement = stage(dims[1], cfg.heads[0], cfg.num_refinement_blocks)
        self.output = nn.Conv2d(dims[1], cfg.out_channels, 3, padding=1, bias=cfg.bias)

    def check_sizes(self, query: torch.Tensor, prompt_input: torch.Tensor | None,
                    prompt_target: torch.Tensor | None) -> None:
        """Raise ValueError unless the inputs have shapes this network can process."""
        cfg = self.config
        check_vpip_inputs(cfg, query, prompt_input, prompt_target,
                          f"window {cfg.window_size} at every windowed scale")

    def to_network_range(self, image: torch.Tensor) -> torch.Tensor:
        """[0, 1] image -> [o, 1 - o] with o = ``config.input_offset`` (identity when o = 0)."""
        offset = self.config.input_offset
        return image * (1.0 - 2.0 * offset) + offset if offset else image

    def from_network_range(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_network_range`."""
        offset = self.config.input_offset
        return (image - offset) / (1.0 - 2.0 * offset) if offset else image

    def encode_prompt(self, prompt_input: torch.Tensor, prompt_target: torch.Tensor):
        """Prompt tokens (keys from the prompt input, values from the prompt target), B×N×8·dim each."""
        return self.Prompt_KV_Encoder(self.to_network_range(prompt_input), self.to_network_range(prompt_target))

    def forward_with_prompt(self, query: torch.Tensor, prompt_keys: torch.Tensor | None,
                            prompt_values: torch.Tensor | None) -> torch.Tensor:
        """Main network with precomputed prompt tokens (reuse one prompt across many queries)."""
        query = self.to_network_range(query)
        enc1 = self.encoder_level1(self.patch_embed(query))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.down3_4(enc3)
        if self.config.use_prompt:
            for block in self.latent_blocks:
                latent = block(latent, prompt_keys, prompt_values)
        else:
            latent = self.latent(latent)
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        out = self.output(self.refinement(dec1))
        return self.from_network_range(out + query if self.config.global_residual else out)

    def forward(self, query: torch.Tensor, prompt_input: torch.Tensor | None = None,
                prompt_target: torch.Tensor | None = None) -> torch.Tensor:
        self.check_sizes(query, prompt_input, prompt_target)
        if not self.config.use_prompt:
            return self.forward_with_prompt(query, None, None)
        keys, values = self.encode_prompt(prompt_input, prompt_target)
        return self.forward_with_prompt(query, keys, values)


def build_genlv(**config) -> GenLV:
    """Factory used by the registry: GenLV from GenLVConfig fields."""
    return GenLV(config_from(GenLVConfig, "GenLV", config))
