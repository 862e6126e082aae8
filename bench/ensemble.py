"""Geometric self-ensemble of any generalist: the "+" / "x8" results of restoration papers (Timofte et
al. 2016; Lim et al. 2017, EDSR+), adapted to visual prompts.

The query and the prompt pair are rotated and flipped alike by each symmetry of the square, the
generalist answers each transformed triple, each answer is turned back, and the answers are
averaged. Transforming the prompt with the query keeps the task the same for direction-dependent
tasks as well (an emboss lit from the top-left becomes one lit from another corner in both the
prompt and the query, and turning the answer back restores it). ``load_generalist(spec,
self_ensemble=N)`` (``-o self_ensemble=N`` on the command line) wraps any generalist; N is 1 (off),
2 (+ horizontal flip), 4 (the four rotations) or 8 (all eight). It costs N predictions per query.
A generalist that needs a square input keeps getting one; a non-square query reaches it with its
height and width swapped under a quarter turn.
"""
from __future__ import annotations

# (quarter turns counter-clockwise, then flip left-right?) for each ensemble size
TRANSFORMS = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (1, False), (2, False), (3, False)),
    8: tuple((k, flip) for flip in (False, True) for k in range(4)),
}


def check_transforms(transforms, who: str) -> int:
    """``transforms`` if it is an ensemble size of TRANSFORMS, else a ValueError naming ``who``."""
    if isinstance(transforms, bool) or not isinstance(transforms, int) or transforms not in TRANSFORMS:
        raise ValueError(f"{who}: self_ensemble must be one of {sorted(TRANSFORMS)} (symmetries of the square "
                         f"averaged), got {transforms!r}")
    return transforms


def dihedral(images, quarter_turns: int, flip: bool):
    """B×C×H×W tensor -> rotated ``quarter_turns`` × 90° counter-clockwise, then flipped left-right."""
    import torch

    out = torch.rot90(images, quarter_turns, dims=(-2, -1)) if quarter_turns % 4 else images
    return torch.flip(out, dims=(-1,)) if flip else out


def undo_dihedral(images, quarter_turns: int, flip: bool):
    """The inverse of ``dihedral(images, quarter_turns, flip)``."""
    import torch

    out = torch.flip(images, dims=(-1,)) if flip else images
    return torch.rot90(out, -quarter_turns, dims=(-2, -1)) if quarter_turns % 4 else out


class SelfEnsemble:
    """A generalist whose answer is the mean of ``inner``'s answers under ``transforms`` symmetries."""

    def __init__(self, inner, transforms: int):
        self.inner = inner
        self.transforms = TRANSFORMS[check_transforms(transforms, inner.name)]
        self.name = f"{inner.name}+x{transforms}"

    def predict(self, query, prompt_input, prompt_target):
        total = None
        for turns, flip in self.transforms:
            answer = self.inner.predict(*(dihedral(t, turns, flip) for t in (query, prompt_input, prompt_target)))
            answer = undo_dihedral(answer, turns, flip)
            total = answer if total is None else total + answer
        return total / len(self.transforms)

    def info(self) -> dict:
        from .protocol import describe

        info = {k: v for k, v in describe(self.inner).items() if k != "name"}
        n = len(self.transforms)
        info["size"] = f"{info.get('size', 'any size')}; mean of {n} predictions under rotations/flips"
        info["self_ensemble"] = n
        # The authors' single-pass latency (bench.peers, keyed by arch) is no bar for N passes.
        if "arch" in info:
            info["ensembled_arch"] = info.pop("arch")
        return info
