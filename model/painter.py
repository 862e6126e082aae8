"""Painter (Wang et al., CVPR 2023), state-dict compatible with ``baaivision/Painter``.

A ViTDet-style ViT that in-paints the bottom half of a 2×1 canvas:

* ``imgs`` (prompt input above query) and ``tgts`` (prompt target above anything) are patch
  embedded separately; masked ``tgts`` patches are replaced by ``mask_token``; each stream gets
  its segment token and the 14×14 pretraining ``pos_embed`` resized bicubically to the token grid.
* blocks 0..``merge_index`` run on both streams as one batch, which are then averaged; every block
  is global attention with decomposed relative positions (the official factory's window list is a
  tuple of lists, so no block is windowed — see shared/reference/checkpoints/README.md).
* the LayerNorm'd outputs of four blocks are concatenated, linearly expanded to p×p×``decoder_dim``
  per token, pixel-shuffled to full size, then conv3x3 → LayerNorm2D → GELU → conv1x1.

Tokens are kept as B×H×W×D as in the official code.  The network maps raw tensors to raw
tensors; the released weights expect RGB with ImageNet mean/std, which ``bench.official`` applies.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .promptgip import Block

LAYERNORM_EPS = 1e-6


@dataclass(frozen=True)
class PainterConfig:
    """Constructor arguments; defaults are ``painter_vit_large_patch16_input896x448_win_dec64_8glb_sl1``."""

    img_size: tuple[int, int] = (896, 448)   # canvas H×W; H must be 2·W (two stacked squares)
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    pretrain_img_size: int = 224             # pos_embed is 14×14 + cls, resized at run time
    decoder_embed_dim: int = 64
    merge_index: int = 2                     # streams are averaged after this block
    out_indices: tuple[int, ...] = (5, 11, 17, 23)  # blocks whose normalised outputs feed the decoder

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- position helpers

def resize_abs_pos(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """1×(1+S²)×D pretraining table (cls first) -> 1×h×w×D, bicubic when the grid differs (ViTDet)."""
    table = pos_embed[:, 1:]
    side = round(table.shape[1] ** 0.5)
    table = table.reshape(1, side, side, -1)
    if (side, side) == tuple(grid):
        return table
    resized = F.interpolate(table.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def relative_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """(2·size−1)×C table -> size×size×C embeddings indexed by (query − key) along one axis."""
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(f"relative table has {rel_pos.shape[0]} rows; a {size}-token axis needs {2 * size - 1} "
                         "(Painter's canvas size is fixed)")
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + size - 1]


def decomposed_rel_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                        grid: tuple[int, int]) -> torch.Tensor:
    """Additive attention bias B×heads×N×N from unscaled queries B×heads×N×C (MViTv2 / ViTDet rule)."""
    h, w = grid
    b, heads, _, c = q.shape
    r_q = q.reshape(b, heads, h, w, c)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, relative_table(rel_pos_h, h))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, relative_table(rel_pos_w, w))
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)


# ----------------------------------------------------------------------------- modules (official key names)

class PatchEmbed(nn.Module):
    """B×C×H×W -> B×(H/p)×(W/p)×D tokens (ViTDet ``PatchEmbed``: ``proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).permute(0, 2, 3, 1)


class RelPosAttention(nn.Module):
    """Global attention on B×H×W×D tokens with decomposed relative positions (ViTDet ``Attention`` keys)."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, d = x.shape
        q, k, v = self.qkv(x).view(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = decomposed_rel_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w)).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, d))


class LayerNorm2D(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map (biased variance, eps 1e-6)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias,
                            LAYERNORM_EPS).permute(0, 3, 1, 2)


class Painter(nn.Module):
    """``forward(imgs, tgts, bool_masked_pos) -> prediction``: canvases B×3×H×W -> B×3×H×W (normalised space)."""

    training_objective = "painter"   # model.objectives: smooth-L1 on masked target patches

    def __init__(self, config: PainterConfig):
        super().__init__()
        self.config = c = config
        grid = (c.img_size[0] // c.patch_size, c.img_size[1] // c.patch_size)
        if c.img_size[0] != 2 * c.img_size[1] or c.img_size[1] % c.patch_size:
            raise ValueError(f"canvas must be 2W×W with W a multiple of the patch size, got {c.img_size}")
        if max(c.out_indices) >= c.depth or c.merge_index >= c.depth:
            raise ValueError(f"out_indices {c.out_indices} / merge_index {c.merge_index} must be below depth {c.depth}")
        if c.merge_index > min(c.out_indices):
            raise ValueError(f"the streams must be merged (block {c.merge_index}) before the first decoder feature "
                             f"(block {min(c.out_indices)})")
        self.grid = grid
        # Parameter attributes first, in the official order (state-dict keys follow it).
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, c.embed_dim))
        self.segment_token_x = nn.Parameter(torch.zeros(1, 1, 1, c.embed_dim))
        self.segment_token_y = nn.Parameter(torch.zeros(1, 1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (c.pretrain_img_size // c.patch_size) ** 2 + 1, c.embed_dim))
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, attn=RelPosAttention(c.embed_dim, c.num_heads, grid))
            for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=LAYERNORM_EPS)
        self.decoder_embed = nn.Linear(c.embed_dim * len(c.out_indices), c.patch_size ** 2 * c.decoder_embed_dim)
        self.decoder_pred = nn.Sequential(
            nn.Conv2d(c.decoder_embed_dim, c.decoder_embed_dim, 3, padding=1),
            LayerNorm2D(c.decoder_embed_dim),
            nn.GELU(),
            nn.Conv2d(c.decoder_embed_dim, 3, 1),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """Official initialisation: N(0, 0.02) tokens and pos_embed, truncated-normal linears, zero rel-pos."""
        for token in (self.mask_token, self.segment_token_x, self.segment_token_y):
            nn.init.normal_(token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """H×W of each image of the canvas (a canvas is two of them stacked); the bench resizes to it."""
        return (self.config.img_size[1], self.config.img_size[1])

    def size_overrides(self, size: int) -> dict:
        """Config overrides that make the canvas hold two ``size``×``size`` images (training crops)."""
        p = self.config.patch_size
        if size % p or size < p:
            raise ValueError(f"takes images whose side is a multiple of its patch size {p} "
                             f"(e.g. --size {max(p, size - size % p)})")
        return {"img_size": [2 * size, size]}

    def query_mask(self, batch: int = 1, device=None) -> torch.Tensor:
        """The inference mask: B×N bool, True on the bottom half of the canvas (the answer)."""
        mask = torch.zeros(batch, self.num_patches, dtype=torch.bool, device=device)
        mask[:, self.num_patches // 2:] = True
        return mask

    def encode(self, imgs: torch.Tensor, tgts: torch.Tensor, bool_masked_pos: torch.Tensor) -> list[torch.Tensor]:
        """Canvases and mask -> the normalised features of ``out_indices``, each B×h×w×D."""
        x, y = self.patch_embed(imgs), self.patch_embed(tgts)
        b, h, w, _ = x.shape
        masked = bool_masked_pos.reshape(b, h, w, 1).to(y.dtype)
        y = y * (1 - masked) + self.mask_token * masked
        pos = resize_abs_pos(self.pos_embed, (h, w))
        x = torch.cat([x + self.segment_token_x + pos, y + self.segment_token_y + pos], dim=0)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.config.merge_index:
                x = 0.5 * (x[:b] + x[b:])
            if index in self.config.out_indices:
                features.append(self.norm(x))
        return features

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Block features -> B×3×H×W prediction (linear to p×p×C per token, pixel shuffle, conv head)."""
        x = self.decoder_embed(torch.cat(features, dim=-1))
        b, h, w, _ = x.shape
        p, c = self.config.patch_size, self.config.decoder_embed_dim
        x = x.reshape(b, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * p, w * p)
        return self.decoder_pred(x)

    def forward(self, imgs: torch.Tensor, tgts: torch.Tensor,
                bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(imgs.shape[-2:]) != tuple(self.config.img_size):
            raise ValueError(f"Painter takes {tuple(self.config.img_size)} canvases, got {tuple(imgs.shape[-2:])}")
        if bool_masked_pos is None:
            bool_masked_pos = self.query_mask(imgs.shape[0], imgs.device)
        return self.decode(self.encode(imgs, tgts, bool_masked_pos.flatten(1).bool()))


def painter_loss(pred: torch.Tensor, tgts: torch.Tensor, bool_masked_pos: torch.Tensor,
                 valid: torch.Tensor, patch_size: int = 16, ignore_sum: float = 300.0) -> torch.Tensor:
    """Official training loss: smooth-L1 (beta 0.01) on masked patches of ImageNet-normalised targets.

    A sample whose unmasked target values (de-normalised, [0, 1]) sum below ``ignore_sum`` is
    ignored, as in the official code (300 there, on 896×448 canvases with half the patches unmasked).
    """
    b, _, h, w = tgts.shape
    mask = bool_masked_pos.reshape(b, 1, h // patch_size, w // patch_size).to(pred.dtype)
    mask = mask.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3).expand(-1, 3, -1, -1)
    from .objectives import imagenet_denormalize

    ignore = (imagenet_denormalize(tgts) * (1 - mask)).sum((1, 2, 3)) < ignore_sum
    valid = valid * (~ignore).to(valid.dtype).view(b, 1, 1, 1)
    mask = mask * valid
    loss = F.smooth_l1_loss(pred, tgts, reduction="none", beta=0.01)
    return (loss * mask).sum() / (mask.sum() + 1e-2)


def build_painter(**config) -> Painter:
    """``model.build`` factory: Painter from keyword arguments of :class:`PainterConfig`."""
    for key in ("img_size", "out_indices"):
        if key in config:
            config[key] = tuple(config[key])
    return Painter(PainterConfig(**config))
