"""The Reed-Solomon code's parameters and the sizes they imply, without the codec.

Why apart from ``rs``: the byte layout (``layout``) needs only these numbers, and modules that merely
recognise or size a sealed file (an upload's magic check, the targets) should not import numpy and
reedsolo for them. ``rs`` re-exports every name, so ``rs.NSYM`` and ``rs.parity_size`` are unchanged.
"""

from __future__ import annotations

PRIM = 0x11D  # x^8 + x^4 + x^3 + x^2 + 1, reedsolo's default
GENERATOR = 2
FCR = 0
N = 255  # codeword length (symbols of one byte)
NSYM = 32  # parity symbols per codeword: 16 unknown errors or 32 erasures
K = N - NSYM  # 223 message bytes per codeword


def codewords_for(length: int) -> int:
    """Number of interleaved codewords protecting a piece of ``length`` bytes."""
    return -(-length // K)


def parity_size(length: int) -> int:
    """Bytes of parity stored after a piece of ``length`` bytes."""
    return NSYM * codewords_for(length)
