"""Training objectives (and the matching inference call) per architecture family.

An objective is a pure function ``(net, query, prompt_input, prompt_target, target, *, generator)
-> (loss, output)``: the four images are float RGB ``B×3×H×W`` in [0, 1], ``loss`` is a scalar
tensor and ``output`` is the prediction for the query in the same [0, 1] RGB contract. ``net`` may
be wrapped by DDP or ``torch.compile``; every objective calls it once through its ``forward``,
so gradients are synchronised. Random masks are drawn from ``generator`` (a CPU
``torch.Generator``; the trainer reseeds it from the run's seed and the step); without one the
mask is the deterministic inference mask (the whole answer hidden).

An architecture picks its objective with a class attribute, ``training_objective = "painter"``;
without one it is ``"l1"``. Objectives follow the authors' training code:

- ``l1``: L1 between ``net(query, prompt_input, prompt_target)`` and the target (GenLV paper
  §4.1; PromptIR's ``train.py`` uses ``nn.L1Loss``; X-Restormer and anything else).
- ``promptgip`` (``models_mae_PromptGIP_CNN_Head.py``, ``train_mode=True``, ``mask_ratio=0.75``):
  the prompt input and the query are always visible; 75 % of the prompt-target and answer tokens
  together are hidden (the same count per sample). Loss = MSE per patch averaged over the hidden
  patches (``norm_pix_loss`` is off) + L1 of the CNN head's prompt target + L1 of its answer
  (whole images).
- ``painter`` (``models_painter.py`` + ``main_train.py``): ImageNet-normalised canvases, prompt
  above query (``imgs``) and prompt target above target (``tgts``); the hidden ``tgts`` patches are
  the bottom half with probability 0.1 (``half_mask_ratio``), else BEiT block masking of half the
  canvas's patches. Loss = smooth-L1 (β 0.01) on the hidden patches in normalised space, samples
  whose visible target is black ignored (``model.painter.painter_loss``).
"""
from __future__ import annotations

import functools

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_OBJECTIVE = "l1"

PROMPTGIP_MASK_RATIO = 0.75        # train_PromptGIP.py --mask_ratio (and forward()'s default)
PAINTER_HALF_MASK_RATIO = 0.1      # main_train.py --half_mask_ratio
PAINTER_MASK_FRACTION = 784 / 1568  # --num_mask_patches 784 of the 56×28 patches
PAINTER_BLOCK_FRACTION = 392 / 1568  # --max_mask_patches_per_block 392
PAINTER_MIN_BLOCK = 16             # --min_mask_patches_per_block
PAINTER_MIN_ASPECT = 0.3           # MaskingGenerator(min_aspect=0.3): aspect in [0.3, 1/0.3]
# Official "black target" rule: 300 summed over the 784·16²·3 visible values of an 896×448 canvas.
PAINTER_BLACK_MEAN = 300.0 / (784 * 16 * 16 * 3)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Objective:
    """A training loss and the inference call that goes with it."""

    name: str
    loss: Callable      # (net, query, prompt_input, prompt_target, target, *, generator) -> (loss, output)
    predict: Callable   # (net, query, prompt_input, prompt_target) -> B×3×H×W in [0, 1] (not clamped)
    inference: str      # how predict feeds the network (for info())


_OBJECTIVES: dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    if objective.name in _OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is registered twice")
    _OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown training objective {name!r}; known: {', '.join(_OBJECTIVES)}") from None


def unwrap(net: nn.Module) -> nn.Module:
    """The bare network inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or getattr(net, "module", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def objective_for(net: nn.Module) -> Objective:
    """The objective the network's class names in ``training_objective`` (``l1`` if none)."""
    bare = unwrap(net)
    name = getattr(type(bare), "training_objective", DEFAULT_OBJECTIVE)
    try:
        return get_objective(name)
    except KeyError as err:
        raise KeyError(f"{type(bare).__name__}.training_objective: {err.args[0]}") from None


def predict(net: nn.Module, query: torch.Tensor, prompt_input: torch.Tensor,
            prompt_target: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] query prediction B×3×H×W (images at the network's size), as the network was trained."""
    return objective_for(net).predict(net, query, prompt_input, prompt_target)


# ----------------------------------------------------------------------------- pure helpers

def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """B×C×H×W -> B×(H/p·W/p)×(p²·C), raster order, pixels (row, column, channel) as MAE's patchify."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean over the masked patches of each patch's mean squared error; pred/target B×L×P, masked B×L bool."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weight = masked.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


@functools.lru_cache(maxsize=16)
def imagenet_stats(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std as 1×3×1×1 tensors on ``device``, made once per device and dtype:
    a fresh host-to-device copy on every call would also break CUDA graph capture. Made outside
    inference mode even when first asked for inside it (an evaluation), since inference tensors
    cannot take part in a later training step's autograd."""
    with torch.inference_mode(False):
        mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1).to(device)
        std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1).to(device)
    return mean, std


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] -> ImageNet-normalised (per-channel mean/std), same shape and dtype."""
    mean, std = imagenet_stats(images.device, images.dtype)
    return (images - mean) / std


def imagenet_denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`imagenet_normalize`."""
    mean, std = imagenet_stats(images.device, images.dtype)
    return images * std + mean


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


# ----------------------------------------------------------------------------- masks

def promptgip_masks(batch: int, num_patches: int, generator: torch.Generator | None,
                    ratio: float = PROMPTGIP_MASK_RATIO) -> torch.Tensor:
    """B×2L bool over [prompt-target tokens, answer tokens], True = hidden.

    With a generator: ``2L − int(2L·(1−ratio))`` tokens per sample, a uniform random subset of
    both images together (the official ``random_masking_specific``). Without: the answer hidden,
    the prompt target visible (the official inference).
    """
    if generator is None:
        masks = torch.zeros(batch, 2 * num_patches, dtype=torch.bool)
        masks[:, num_patches:] = True
        return masks
    visible = int(2 * num_patches * (1 - ratio))
    order = torch.rand(batch, 2 * num_patches, generator=generator).argsort(dim=1)
    return order.argsort(dim=1) >= visible  # rank of each token's noise; the `visible` lowest stay


def _add_block(mask: torch.Tensor, budget: int, min_block: int, generator: torch.Generator) -> int:
    """Hide one random rectangle of new patches (at most ``budget``) in the h×w ``mask``; returns how many."""
    h, w = mask.shape
    log_aspect = math.log(PAINTER_MIN_ASPECT)
    for _ in range(10):  # tries per block, as BEiT's generator
        area = _uniform(generator, min_block, budget)
        aspect = math.exp(_uniform(generator, log_aspect, -log_aspect))
        bh, bw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (0 < bh < h and 0 < bw < w):
            continue
        top, left = _randint(generator, 0, h - bh), _randint(generator, 0, w - bw)
        region = mask[top:top + bh, left:left + bw]
        new = bh * bw - int(region.sum())
        if 0 < new <= budget:
            region.fill_(True)
            return new
    return 0


def block_mask(grid: tuple[int, int], count: int, generator: torch.Generator, *, max_block: int,
               min_block: int) -> torch.Tensor:
    """h×w bool with exactly ``count`` True: random rectangles (aspect 0.3–3.3, at most ``max_block``
    new patches each) until the count is reached, then random single patches added or removed."""
    mask = torch.zeros(grid, dtype=torch.bool)
    hidden = 0
    while hidden < count:
        added = _add_block(mask, min(count - hidden, max_block), min_block, generator)
        if added == 0:
            break
        hidden += added
    flat = mask.view(-1)
    if hidden != count:  # BEiT's generator fixes the count the same way
        pool = torch.nonzero(flat == (hidden > count)).squeeze(1)  # hidden ones if too many, else free ones
        pick = pool[torch.randperm(len(pool), generator=generator)[:abs(hidden - count)]]
        flat[pick] = hidden < count
    return mask


def painter_masks(batch: int, grid: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
    """B×(h·w) bool over the target canvas's patches, True = hidden (official training rule, scaled
    to the grid: half the patches, blocks of at most a quarter; without a generator: the bottom half)."""
    h, w = grid
    half = torch.zeros(grid, dtype=torch.bool)
    half[h // 2:] = True
    if generator is None:
        return half.flatten().expand(batch, -1).clone()
    n = h * w
    count = round(n * PAINTER_MASK_FRACTION)
    max_block = max(1, round(n * PAINTER_BLOCK_FRACTION))
    masks = []
    for _ in range(batch):
        if torch.rand((), generator=generator).item() < PAINTER_HALF_MASK_RATIO:
            masks.append(half)
        else:
            masks.append(block_mask(grid, count, generator, max_block=max_block,
                                    min_block=min(PAINTER_MIN_BLOCK, max_block)))
    return torch.stack(masks).flatten(1)


# ----------------------------------------------------------------------------- objectives

def l1_objective(net, query, prompt_input, prompt_target, target, *, generator=None):
    """L1 between the network's output for the query and the target; output B×3×H×W in [0, 1]."""
    output = net(query, prompt_input, prompt_target)
    return F.l1_loss(output.float(), target), output


def l1_predict(net, query, prompt_input, prompt_target):
    """The network's output for the query (B×3×H×W, [0, 1])."""
    return net(query, prompt_input, prompt_target)


def promptgip_objective(net, query, prompt_input, prompt_target, target, *, generator=None):
    """Masked-patch MSE + CNN-head L1 (prompt target and answer); output = the CNN head's answer in [0, 1]."""
    bare = unwrap(net)
    n, p = bare.num_patches, bare.config.patch_size
    masked = promptgip_masks(query.shape[0], n, generator).to(query.device)
    patches, head_prompt, head_answer = net(query, prompt_input, prompt_target, answer=target, masked=masked)
    sequence = torch.cat([patchify(img, p) for img in (prompt_input, prompt_target, query, target)], dim=1)
    hidden = torch.cat([torch.zeros_like(masked[:, :n]), masked[:, :n], torch.zeros_like(masked[:, :n]),
                        masked[:, n:]], dim=1)
    loss = (masked_patch_mse(patches, sequence, hidden) + F.l1_loss(head_prompt.float(), prompt_target)
            + F.l1_loss(head_answer.float(), target))
    return loss, head_answer


def painter_canvases(query, prompt_input, prompt_target, target):
    """RGB [0, 1] images -> ImageNet-normalised (imgs, tgts) canvases B×3×2H×W: prompt above query/target."""
    imgs = torch.cat([imagenet_normalize(prompt_input), imagenet_normalize(query)], dim=2)
    tgts = torch.cat([imagenet_normalize(prompt_target), imagenet_normalize(target)], dim=2)
    return imgs, tgts


def painter_objective(net, query, prompt_input, prompt_target, target, *, generator=None):
    """Smooth-L1 on the hidden target-canvas patches (normalised space); output = the de-normalised
    bottom half of the prediction, B×3×H×W in [0, 1]."""
    from .painter import painter_loss

    bare = unwrap(net)
    p = bare.config.patch_size
    imgs, tgts = painter_canvases(query, prompt_input, prompt_target, target)
    masks = painter_masks(query.shape[0], bare.grid, generator)
    visible_values = (bare.num_patches - int(masks[0].sum())) * p * p * 3  # the same count for every sample
    masks = masks.to(query.device)
    pred = net(imgs, tgts, masks)
    loss = painter_loss(pred.float(), tgts, masks, torch.ones_like(tgts), p,
                        ignore_sum=PAINTER_BLACK_MEAN * visible_values)
    return loss, imagenet_denormalize(pred[..., query.shape[-2]:, :])


def painter_predict(net, query, prompt_input, prompt_target):
    """Official inference layout: prompt target twice on the target canvas (the lower copy hidden)."""
    imgs, tgts = painter_canvases(query, prompt_input, prompt_target, prompt_target)
    masks = painter_masks(query.shape[0], unwrap(net).grid, None).to(query.device)
    return imagenet_denormalize(net(imgs, tgts, masks)[..., query.shape[-2]:, :])


register_objective(Objective("l1", l1_objective, l1_predict, "net(query, prompt_input, prompt_target)"))
register_objective(Objective(
    "promptgip", promptgip_objective, l1_predict,
    "sequence [prompt input, prompt target, query, answer], answer fully masked, CNN-head answer; RGB, "
    "no normalisation"))
register_objective(Objective(
    "painter", painter_objective, painter_predict,
    "canvas prompt input above query, prompt target above itself, bottom half masked, ImageNet-normalised RGB; "
    "de-normalised bottom half"))
