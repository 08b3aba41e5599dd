"""Plain result records returned by seal / verify / heal (JSON-able through ``as_dict``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class SealReport:
    """What ``seal`` wrote."""

    path: str
    size: int  # bytes of the sealed file
    input_size: int  # plaintext bytes read from the source
    compressed_size: int  # after zstd, before encryption
    data_length: int  # ciphertext bytes (one copy)
    block_count: int
    file_id: str
    key_slots: list[dict]
    verified: bool  # verify-after-write passed
    seconds: float
    sha256: str | None = None  # of the whole file (asked for with file_sha256=True), from writing and read-back

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class VerifyReport:
    """What ``verify`` found.

    ``intact``: nothing is damaged anywhere. ``ok``: every byte of data and
    metadata is recoverable (and, when ``decrypted``, authenticated).
    ``healed_blocks``: blocks with a damaged copy whose data was still
    recovered exactly. ``healing_margin``: redundant copies left at the weakest
    block or metadata region, as a fraction (1.0 = both copies of everything
    intact; 0.5 = somewhere only one intact copy is left; 0.0 = somewhere no
    copy is intact and only Reed-Solomon repair saved the data, or nothing did).
    Each copy additionally carries RS parity correcting 16 byte errors or 32
    erasures in each 255-byte codeword.
    """

    path: str
    ok: bool
    intact: bool
    decrypted: bool
    block_count: int
    healed_blocks: list[int] = field(default_factory=list)
    repaired_blocks: list[int] = field(default_factory=list)
    unrecoverable_blocks: list[int] = field(default_factory=list)
    damaged_regions: list[str] = field(default_factory=list)
    unrecoverable_regions: list[str] = field(default_factory=list)
    healing_margin: float = 1.0
    parity_ratio: float = 0.0  # RS parity bytes per data byte, in each copy
    regions: dict = field(default_factory=dict)
    manifest: dict | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def exit_code(self) -> int:
        """The CLI status for this report: 0 intact, 1 healed, 2 unrecoverable or not authentic."""
        if not self.ok:
            return 2
        return 0 if self.intact else 1
