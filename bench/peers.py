"""The official implementations' measured speed: the bar our reimplementations must beat.

Figures of the project's reference measurement (``shared/reference/peer-throughput.md``): one
NVIDIA H200, torch 2.11, CUDA 13, the authors' own model code, eager, bf16 autocast, AdamW,
random 256² inputs (Painter: its 896×448 canvas); training = forward + backward + optimizer step,
FLOPs = forward × 3, MFU against 989 TFLOP/s. They are reference data, not results of this
project: compare them with ours only when ours were measured on the same kind of GPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

SOURCE = ("the authors' code measured on one NVIDIA H200 (torch 2.11, eager, bf16 autocast; "
          "shared/reference/peer-throughput.md)")


@dataclass(frozen=True)
class PeerFigures:
    arch: str                   # our architecture name for the same network
    code: str                   # what was measured
    device: str
    forward_gflops: float       # per sample
    batch: int                  # the training batch of the row below (largest that fit)
    train_samples_per_s: float
    peak_gib: float
    mfu: float                  # fraction of 989 TFLOP/s
    inference_ms_b1: float

    def as_dict(self) -> dict:
        return asdict(self)


PEERS: dict[str, PeerFigures] = {p.arch: p for p in (
    # GenLV-base: 9.4 samples/s at batch 4; batch 16 ran out of memory on 140 GiB.
    PeerFigures("genlv-base", "GenLV-base (official conference code)", "NVIDIA H200", 635, 8, 10.5, 70.8, 0.020, 68.0),
    PeerFigures("promptir", "PromptIR (official code)", "NVIDIA H200", 345, 16, 15.1, 101.1, 0.016, 36.0),
    PeerFigures("promptgip", "PromptGIP ViT-L (official code)", "NVIDIA H200", 510, 8, 129.7, 10.4, 0.201, 9.9),
    PeerFigures("painter", "Painter ViT-L, 896×448 canvas (official code)", "NVIDIA H200", 1590, 4, 16.8, 38.0,
                0.081, 36.0),
)}


def peer_for(arch: str | None) -> PeerFigures | None:
    """The official code's figures for the network our ``arch`` reimplements, if measured."""
    return PEERS.get(arch or "")


def same_device_kind(ours: str, peer: PeerFigures) -> bool:
    """Whether a device label of ours names the GPU the peer figures were measured on."""
    return peer.device.split()[-1].lower() in (ours or "").lower()
