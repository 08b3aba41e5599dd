"""``heal``: write a fresh, fully redundant copy of a damaged sealed file, without the key.

Everything the key protects is copied byte for byte (header payload, data
stream, manifest ciphertext), so the healed file decrypts exactly like the
original; everything redundancy adds (parity, second copies, locator) is
rebuilt. For an undamaged input the output is byte-identical to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dbs_admin.sealed.atomic import atomic_output
from dbs_admin.sealed.blocks import BlockReader
from dbs_admin.sealed.container import ContainerWriter
from dbs_admin.sealed.errors import UnrecoverableError, UsageError
from dbs_admin.sealed.metadata import file_size_of
from dbs_admin.sealed.structure import load_structure


@dataclass
class HealReport:
    """What ``heal`` repaired and wrote."""

    source: str
    destination: str
    size: int
    healed_blocks: list[int] = field(default_factory=list)
    damaged_regions: list[str] = field(default_factory=list)

    @property
    def was_damaged(self) -> bool:
        return bool(self.healed_blocks or self.damaged_regions)

    def as_dict(self) -> dict:
        return {"source": self.source, "destination": self.destination, "size": self.size,
                "healed_blocks": self.healed_blocks, "damaged_regions": self.damaged_regions}


def heal(path: str | os.PathLike[str], destination: str | os.PathLike[str], *,
         overwrite: bool = False) -> HealReport:
    """Heal ``path`` into a new file ``destination`` (atomically, verified after writing).

    Raises UnrecoverableError (naming blocks or regions) when the damage is
    beyond repair; then nothing is written.
    """
    path, destination = Path(path), Path(destination)
    if path.resolve() == destination.resolve():
        raise UsageError("heal writes a new file: give an output path other than the input")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    from dbs_admin.sealed.verify import verify

    found = verify(path)
    if not found.ok:
        raise UnrecoverableError(
            f"{path} cannot be healed: {found.error}", blocks=tuple(found.unrecoverable_blocks),
            regions=tuple(found.unrecoverable_regions),
        )
    with f:
        size = file_size_of(f)
        st = load_structure(f, size)
        if st.manifest_payload is None:
            raise UnrecoverableError("the manifest is damaged beyond repair in both copies",
                                     regions=("manifest",))
        blocks = BlockReader(f, size, st.table)
        writers: list[ContainerWriter] = []
        def check(tmp: Path) -> None:
            writers[0].check_written(tmp)

        with atomic_output(destination, overwrite=overwrite, check=check) as out:
            writer = ContainerWriter(out, st.header, st.header_payload)
            writers.append(writer)
            try:
                for data in blocks.iter_data():
                    writer.feed(data)
                written = writer.finish(st.manifest_payload)
            finally:
                writer.close()
    return HealReport(str(path), str(destination), written, list(found.healed_blocks),
                      list(found.damaged_regions))
