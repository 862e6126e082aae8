"""PromptGIP (Liu et al., ICML 2023), state-dict compatible with ``lyh-18/PromptGIP``.

An MAE-style ViT that reads four images as one token sequence — prompt input, prompt target,
query, answer — and paints the answer's tokens:

* encoder: a shared 16×16 patch embedding per image, plus a fixed 1-D sinusoid position table in
  which image ``k`` owns rows ``1 + k·(512/p)² + i`` (row 0 is the cls token); a cls token; ViT
  blocks; LayerNorm.  At inference the answer's tokens are all masked, so the encoder sees only
  cls + the first three images.
* decoder: a linear projection, one mask token per answer patch, the same kind of sinusoid table
  at the decoder width, ViT blocks, LayerNorm and a linear patch predictor.
* ``CNN_Head``: conv3x3 → LReLU(0.1) → conv3x3 → LReLU → conv3x3 on the unpatchified answer.

The official encoder shuffles the kept tokens randomly before the blocks; attention is
permutation-equivariant and the decoder unshuffles, so keeping the natural order computes the
same function without the shuffle.  The network is colour-agnostic: the official weights expect
BGR in [0, 1] without normalisation, which ``bench.official`` supplies.

Training (``model.objectives``, official ``train_mode=True``): all four images are embedded, the
prompt input and the query are always kept, and a given set of prompt-target and answer tokens is
masked; ``forward(..., answer=, masked=)`` returns the patch predictions of the whole sequence and
the CNN head's prompt target and answer, which the masked-patch MSE and the L1 read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYERNORM_EPS = 1e-6   # partial(nn.LayerNorm, eps=1e-6) in the official factories
NUM_IMAGES = 4         # prompt input, prompt target, query, answer
POS_TABLE_SIDE = 512   # the official tables reserve (512/p)² rows per image, whatever img_size is


@dataclass(frozen=True)
class PromptGIPConfig:
    """Constructor arguments; defaults are the released ViT-L model (``mae_vit_large_patch16_input256``)."""

    img_size: int = 256
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    head_nf: int = 64      # CNN_Head width (Simple_Head(nf=64, scale=1))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def sinusoid_table(n_positions: int, width: int) -> torch.Tensor:
    """Transformer sin/cos table, float32 ``n_positions × width``: even columns sin, odd cos."""
    # float64 as the official numpy code, so the float32 table rounds the same way.
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(width) // 2).to(torch.float64) / width
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def image_positions(table: torch.Tensor, image_index: int, num_patches: int, patch_size: int) -> torch.Tensor:
    """Rows of the official 1-D table for the patches of image ``image_index`` (0–3): ``num_patches × width``."""
    block = (POS_TABLE_SIDE // patch_size) ** 2
    start = 1 + image_index * block
    return table[start:start + num_patches]


# ----------------------------------------------------------------------------- ViT parts (timm key names)

class PatchEmbed(nn.Module):
    """B×C×H×W -> B×(H/p·W/p)×D tokens in raster order (timm ``PatchEmbed`` keys: ``proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear on the last dimension (timm ``Mlp`` keys: ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SelfAttention(nn.Module):
    """Global multi-head self-attention on B×N×D tokens (timm ``Attention`` keys: ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale = head_dim ** -0.5, as timm
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(LN(x)), then x + mlp(LN(x)) (timm ``Block`` keys).

    ``attn`` maps tokens to tokens of the same shape: PromptGIP's global ``SelfAttention`` by
    default, Painter's relative-position attention on a B×H×W×D grid.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, attn: nn.Module | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        # Registered in the official attribute order: norm1, attn, norm2, mlp.
        self.attn = attn if attn is not None else SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SimpleHead(nn.Module):
    """PromptGIP's ``Simple_Head`` (scale 1): three 3x3 convs with LeakyReLU(0.1) between, no residual."""

    def __init__(self, channels: int = 3, nf: int = 64):
        super().__init__()
        self.conv_first = nn.Conv2d(channels, nf, 3, padding=1)
        self.HRconv = nn.Conv2d(nf, nf, 3, padding=1)  # noqa: N815 - official key name
        self.conv_last = nn.Conv2d(nf, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv_first(x), 0.1)
        return self.conv_last(F.leaky_relu(self.HRconv(x), 0.1))


# ----------------------------------------------------------------------------- the model

class PromptGIP(nn.Module):
    """``forward(query, prompt_input, prompt_target) -> answer``: B×3×S×S tensors, S = ``img_size``."""

    training_objective = "promptgip"   # model.objectives: masked-patch MSE + CNN-head L1

    def __init__(self, config: PromptGIPConfig):
        super().__init__()
        self.config = config
        c = config
        if c.img_size % c.patch_size or c.img_size > POS_TABLE_SIDE:
            raise ValueError(f"img_size must be a multiple of patch_size and at most {POS_TABLE_SIDE}, "
                             f"got {c.img_size}")
        # Parameters first, in the official order; the state-dict order follows attribute order.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=LAYERNORM_EPS)
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=LAYERNORM_EPS)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size ** 2 * c.in_chans)
        self.CNN_Head = SimpleHead(c.in_chans, c.head_nf)  # noqa: N815 - official key name
        # Fixed tables, not in the official state_dict: regenerated here (non-persistent buffers).
        rows = NUM_IMAGES * (POS_TABLE_SIDE // c.patch_size) ** 2 + 1
        self.register_buffer("pos_table", sinusoid_table(rows, c.embed_dim), persistent=False)
        self.register_buffer("decoder_pos_table", sinusoid_table(rows, c.decoder_embed_dim), persistent=False)
        self._init_weights()

    @property
    def num_patches(self) -> int:
        return (self.config.img_size // self.config.patch_size) ** 2

    @property
    def image_size(self) -> tuple[int, int]:
        """H×W that every image must have (the bench resizes to it)."""
        return (self.config.img_size, self.config.img_size)

    def size_overrides(self, size: int) -> dict:
        """Config overrides that make the network take ``size``×``size`` images (training crops)."""
        p = self.config.patch_size
        if size % p or not p <= size <= POS_TABLE_SIDE:
            raise ValueError(f"takes images whose side is a multiple of its patch size {p} and at most "
                             f"{POS_TABLE_SIDE} (e.g. --size {max(p, min(POS_TABLE_SIDE, size - size % p))})")
        return {"img_size": size}

    def _init_weights(self) -> None:
        """MAE initialisation: xavier-uniform linears (patch embed as a linear), N(0, 0.02) tokens."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def _positions(self, table: torch.Tensor, image_index: int) -> torch.Tensor:
        return image_positions(table, image_index, self.num_patches, self.config.patch_size)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """B×L×(p²·3) patch predictions (pixel order p, q, channel) -> B×3×H×W, H = W = √L·p."""
        b, length, _ = tokens.shape
        p, side = self.config.patch_size, round(length ** 0.5)
        x = tokens.reshape(b, side, side, p, p, -1).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, -1, side * p, side * p)

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Images 0.. of the sequence -> their tokens with positions, B×(k·L)×D in sequence order."""
        return torch.cat([self.patch_embed(img) + self._positions(self.pos_table, k) for k, img in enumerate(images)],
                         dim=1)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Kept tokens B×K×D -> encoder features B×(1+K)×D, cls first."""
        cls = (self.cls_token + self.pos_table[:1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The first three images (all tokens kept) -> encoder features B×(1+3L)×D, cls first."""
        return self.encode_tokens(self.embed(images))

    def decode(self, latent: torch.Tensor, kept: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder features -> patch predictions for all four images, B×4L×(p²·3) (no cls).

        ``kept`` (B×K int64) gives the sequence positions of the K encoded tokens; None means the
        first K positions (inference: the answer is the masked tail).
        """
        x = self.decoder_embed(latent)
        b, n = x.shape[0], self.num_patches
        if kept is None:
            masked = self.mask_token.expand(b, NUM_IMAGES * n + 1 - x.shape[1], -1)
            x = torch.cat([x, masked], dim=1)
        else:
            body = self.mask_token.expand(b, NUM_IMAGES * n, -1).to(x.dtype)
            body = body.scatter(1, kept[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
            x = torch.cat([x[:, :1], body], dim=1)
        table = self.decoder_pos_table
        positions = torch.cat([table[:1], *(self._positions(table, k) for k in range(NUM_IMAGES))])
        x = x + positions
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_patches(self, query: torch.Tensor, prompt_input: torch.Tensor,
                        prompt_target: torch.Tensor) -> torch.Tensor:
        """Patch predictions for the whole sequence (what the masked-patch MSE loss reads)."""
        self._check_size(query, prompt_input, prompt_target)
        return self.decode(self.encode([prompt_input, prompt_target, query]))

    def forward_masked(self, query: torch.Tensor, prompt_input: torch.Tensor, prompt_target: torch.Tensor,
                       answer: torch.Tensor, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (patch predictions B×4L×(p²·3), CNN-head prompt target, CNN-head answer).

        ``masked`` is B×2L bool over the prompt-target tokens then the answer tokens (True = hidden
        from the encoder); every sample must hide the same number, as the official fixed ratio does.
        """
        self._check_size(query, prompt_input, prompt_target, answer)
        b, n = query.shape[0], self.num_patches
        if tuple(masked.shape) != (b, 2 * n):
            raise ValueError(f"masked must be B×2L = {b}×{2 * n} (prompt-target then answer tokens), "
                             f"got {tuple(masked.shape)}")
        counts = masked.sum(1)
        if not bool((counts == counts[0]).all()):
            raise ValueError("every sample must mask the same number of tokens")
        keep = torch.zeros(b, NUM_IMAGES * n, dtype=torch.bool, device=query.device)
        keep[:, :n] = True                                  # prompt input
        keep[:, n:2 * n] = ~masked[:, :n].to(keep.device)   # prompt target
        keep[:, 2 * n:3 * n] = True                         # query
        keep[:, 3 * n:] = ~masked[:, n:].to(keep.device)    # answer
        # Kept positions in sequence order: a stable sort puts every kept (0) before every hidden (1).
        kept = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :NUM_IMAGES * n - int(counts[0])]
        tokens = self.embed([prompt_input, prompt_target, query, answer])
        latent = self.encode_tokens(torch.gather(tokens, 1, kept[..., None].expand(-1, -1, tokens.shape[-1])))
        pred = self.decode(latent, kept)
        images = torch.cat([self.unpatchify(pred[:, n:2 * n]), self.unpatchify(pred[:, 3 * n:])]).float()
        heads = self.CNN_Head(images)
        return pred, heads[:b], heads[b:]

    def forward(self, query: torch.Tensor, prompt_input: torch.Tensor, prompt_target: torch.Tensor,
                answer: torch.Tensor | None = None, masked: torch.Tensor | None = None):
        """The answer B×3×S×S (inference, answer fully masked); with ``answer`` and ``masked``, the
        training outputs of :meth:`forward_masked` (so that DDP and torch.compile see one forward)."""
        if masked is not None:
            if answer is None:
                raise ValueError("a training pass (masked=...) needs the answer image")
            return self.forward_masked(query, prompt_input, prompt_target, answer, masked)
        pred = self.forward_patches(query, prompt_input, prompt_target)
        answer = self.unpatchify(pred[:, 3 * self.num_patches:]).float()
        return self.CNN_Head(answer)

    def _check_size(self, *images: torch.Tensor) -> None:
        size = self.config.img_size
        for img in images:
            if tuple(img.shape[-2:]) != (size, size):
                raise ValueError(f"PromptGIP takes {size}×{size} images (timm PatchEmbed checks it); "
                                 f"got {tuple(img.shape[-2:])} — resize in the adapter")


def build_promptgip(**config) -> PromptGIP:
    """``model.build`` factory: PromptGIP from keyword arguments of :class:`PromptGIPConfig`."""
    return PromptGIP(PromptGIPConfig(**config))
