"""HDR/SDR colour pipeline: PQ (SMPTE ST 2084), BT.709 <-> BT.2020 primaries, SDR gamma,
tone mapping with a clipped shoulder, and inverse tone mapping with highlight expansion.

Scene-referred linear values use 1.0 = diffuse (reference) white. The HDR rendition puts
reference white at ``HDR_REFERENCE_WHITE_NITS`` (BT.2408's 203 cd/m2) and clips at the mastering
peak; the SDR rendition maps reference white to code 1.0 through a C1 shoulder and clips above.
"""
from __future__ import annotations

import numpy as np

from .colour import luminance

# SMPTE ST 2084 constants.
PQ_M1 = 2610.0 / 16384.0
PQ_M2 = 2523.0 / 4096.0 * 128.0
PQ_C1 = 3424.0 / 4096.0
PQ_C2 = 2413.0 / 4096.0 * 32.0
PQ_C3 = 2392.0 / 4096.0 * 32.0
PQ_PEAK_NITS = 10000.0

HDR_REFERENCE_WHITE_NITS = 203.0   # ITU-R BT.2408 HDR reference white
HDR_MASTERING_PEAK_NITS = 1000.0   # HDR10 mastering display, as HDRTV's 1000-nit grading
SDR_GAMMA = 2.4                    # BT.1886 display gamma; SDR code = display_light^(1/2.4)

# How HDR/SDR images are stored; written into every HDR sample's JSON. Import these, never retype.
HDR_ENCODING = ("PQ (SMPTE ST 2084), BT.2020 primaries, 10000 cd/m2 peak, full-range uint16; "
                "reference white 203 cd/m2, mastered to 1000 cd/m2")
SDR_ENCODING = "BT.709 primaries, gamma 2.4 (BT.1886), full-range uint8"

# Linear-light primaries conversion (ITU-R BT.2087), row-vector form: rgb2020 = rgb709 @ M.T
BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433],
                            [0.0691, 0.9195, 0.0114],
                            [0.0164, 0.0880, 0.8956]], np.float64)
BT2020_TO_BT709 = np.linalg.inv(BT709_TO_BT2020)


def pq_encode(nits: np.ndarray) -> np.ndarray:
    """Absolute luminance in cd/m2 (>= 0) -> PQ code values in [0, 1] (SMPTE ST 2084 inverse EOTF), float64."""
    y = np.clip(np.asarray(nits, np.float64) / PQ_PEAK_NITS, 0.0, 1.0) ** PQ_M1
    return ((PQ_C1 + PQ_C2 * y) / (1.0 + PQ_C3 * y)) ** PQ_M2


def pq_decode(code: np.ndarray) -> np.ndarray:
    """PQ code values in [0, 1] -> absolute luminance in cd/m2 (SMPTE ST 2084 EOTF), float64."""
    e = np.clip(np.asarray(code, np.float64), 0.0, 1.0) ** (1.0 / PQ_M2)
    return PQ_PEAK_NITS * (np.maximum(e - PQ_C1, 0.0) / (PQ_C2 - PQ_C3 * e)) ** (1.0 / PQ_M1)


def convert_primaries(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Linear RGB HxWx3 -> linear RGB in other primaries (3x3 ``matrix`` acting on column vectors)."""
    return np.asarray(rgb, np.float64) @ np.asarray(matrix, np.float64).T


def sdr_encode(display_linear: np.ndarray) -> np.ndarray:
    """Linear SDR display light in [0, 1] -> gamma-encoded code values (BT.1886 inverse, gamma 2.4)."""
    return np.clip(np.asarray(display_linear, np.float64), 0.0, 1.0) ** (1.0 / SDR_GAMMA)


def sdr_decode(code: np.ndarray) -> np.ndarray:
    """Gamma-encoded SDR code values in [0, 1] -> linear display light (BT.1886, gamma 2.4)."""
    return np.clip(np.asarray(code, np.float64), 0.0, 1.0) ** SDR_GAMMA


def tone_map_shoulder(linear: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Scene linear (1 = diffuse white) -> SDR display linear in [0, 1].

    Identity below ``knee``; above it a quadratic shoulder with slope 1 at the knee (C1) that reaches
    1.0 at ``knee + 2 (1 - knee)`` (1.2 for the default) - everything brighter is clipped, as on
    an SDR rendition. Applied per channel, so saturated highlights also clip per channel.
    """
    x = np.asarray(linear, np.float64)
    white = knee + 2.0 * (1.0 - knee)
    t = np.clip((white - x) / (white - knee), 0.0, 1.0)
    shoulder = knee + (1.0 - knee) * (1.0 - t * t)
    return np.where(x <= knee, np.maximum(x, 0.0), shoulder)


def expand_highlights(linear: np.ndarray, gain: float, threshold: float = 0.75,
                      smooth: np.ndarray | None = None) -> np.ndarray:
    """Inverse tone mapping estimate: scene linear [0, 1] -> linear HDR with highlights expanded.

    Pixels whose (optionally pre-smoothed) luminance exceeds ``threshold`` are multiplied by up to
    ``gain`` along a smoothstep ramp reaching ``gain`` at luminance 1, so clipped skies and lamps
    become genuinely brighter than diffuse white while mid-tones stay unchanged.
    """
    x = np.asarray(linear, np.float64)
    lum = luminance(x.astype(np.float32)).astype(np.float64) if smooth is None else np.asarray(smooth, np.float64)
    t = np.clip((lum - threshold) / (1.0 - threshold), 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return x * (1.0 + (gain - 1.0) * ramp)[..., None]


def render_hdr_pq(scene_linear_709: np.ndarray, peak_nits: float = HDR_MASTERING_PEAK_NITS,
                  white_nits: float = HDR_REFERENCE_WHITE_NITS) -> np.ndarray:
    """Scene linear BT.709 (1 = diffuse white) -> PQ-coded BT.2020 RGB in [0, 1] (float64), clipped at the peak."""
    rgb2020 = np.clip(convert_primaries(scene_linear_709, BT709_TO_BT2020), 0.0, None)
    return pq_encode(np.minimum(rgb2020 * white_nits, peak_nits))


def decode_hdr_pq(code: np.ndarray, white_nits: float = HDR_REFERENCE_WHITE_NITS) -> np.ndarray:
    """PQ-coded BT.2020 RGB in [0, 1] -> scene linear BT.709 (1 = diffuse white), float64.

    The inverse of ``render_hdr_pq`` for values below the mastering peak.
    """
    return convert_primaries(pq_decode(code) / white_nits, BT2020_TO_BT709)


def render_sdr(scene_linear_709: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Scene linear BT.709 -> SDR gamma-coded BT.709 RGB in [0, 1] (float64): shoulder tone map, clip, gamma 2.4."""
    return sdr_encode(tone_map_shoulder(scene_linear_709, knee))


def decode_sdr(code: np.ndarray) -> np.ndarray:
    """SDR gamma-coded BT.709 in [0, 1] -> SDR display linear (equals scene linear below the knee)."""
    return sdr_decode(code)
