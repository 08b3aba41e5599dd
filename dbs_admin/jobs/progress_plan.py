"""One bar per job: each stage's own progress folded into its share of the whole, moving forward only.

Why: the services report progress per stage, in that stage's own unit ("rows 312 of 722", "files 3 of 9",
"uploading to offsite 3 MB of 40 MB"). Shown as they come, the bar restarted at every stage, or (when a
stage reported once and the next one was the end) went 0% → 0.1% → 100%. Each kind of job has its stages
in order, each with a share of the bar sized by the bytes it moves (capture reads the data and the seal
writes it twice and reads it back; each upload sends the sealed file once), and the bar is the sum of the
stages done plus the running stage's own fraction of its share. It never moves back.

A restore that first backs up the data it replaces runs a backup's stages in the first part of its bar.

The database and media parts of the bands below are a default. A service that can estimate them sends
``progress("sizing", database bytes, database + media bytes)`` first (``backups.sizing``), and the span the two
parts share is then divided by those bytes: a site that is mostly images spends most of its bar on files.
A validate job checks every block, then (with a key) decrypts and parses the contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbs_admin.backups.sizing import SIZING  # progress(SIZING, database part, whole): the capture's two parts

MIN_PART = 0.02  # of the shared span: a part estimated at zero bytes still shows that it ran
VERIFYING = "verifying on "  # an upload's verification by reading it back (targets that verify on put)
UPLOAD_PART = 0.6  # of an upload's slice: sending it; the rest is reading it back (a link is often asymmetric)

# (stage name or prefix, start, end) of a job's bar, in order.
Band = tuple[str, float, float]

BACKUP: tuple[Band, ...] = (
    ("rows", 0.0, 0.55), ("database", 0.0, 0.55), ("files", 0.55, 0.7), ("verifying", 0.7, 0.72),
    ("uploading to ", 0.72, 0.99),
)
# A backup kept only in local folders: the sealed file is linked in place, nothing is uploaded.
BACKUP_LOCAL: tuple[Band, ...] = (
    ("rows", 0.0, 0.8), ("database", 0.0, 0.8), ("files", 0.8, 0.97), ("verifying", 0.97, 0.99),
)
RESTORE: tuple[Band, ...] = (("database", 0.02, 0.85), ("rows", 0.02, 0.85), ("files", 0.85, 0.99))
DRILL: tuple[Band, ...] = (("database", 0.05, 0.6), ("rows", 0.05, 0.6), ("files", 0.6, 0.7), ("check: ", 0.7, 0.99))
# Checking every block reads the file once; decrypting reads it again, inflates and parses it (about as long).
VALIDATE: tuple[Band, ...] = (("downloading from ", 0.0, 0.3), ("checking blocks", 0.3, 0.99))
VALIDATE_WITH_KEY: tuple[Band, ...] = (("downloading from ", 0.0, 0.2), ("checking blocks", 0.2, 0.5),
                                       ("decrypting", 0.5, 0.99))
# An export reads the snapshot and seals it (two copies written), then the writer reads the file back once.
EXPORT: tuple[Band, ...] = (("exporting", 0.0, 0.85), ("verifying the export", 0.85, 0.99))
DATABASE_PARTS = ("rows", "database")  # the capture's two parts: these bands, then "files"

# kind -> {stage that starts a phase (None: from the start): (phase start, phase end, its bands)}
PLANS: dict[str, dict[str | None, tuple[float, float, tuple[Band, ...]]]] = {
    "backup": {None: (0.0, 1.0, BACKUP)},
    "restore": {None: (0.0, 1.0, RESTORE), "backing up the current data": (0.0, 0.4, BACKUP),
                "restoring": (0.4, 1.0, RESTORE)},
    "drill": {None: (0.0, 1.0, DRILL)},
    "validate": {None: (0.0, 1.0, VALIDATE), "validating": (0.0, 1.0, VALIDATE),
                 "validating with the key": (0.0, 1.0, VALIDATE_WITH_KEY)},
    "export": {None: (0.0, 1.0, EXPORT)},
}


@dataclass
class ProgressPlan:
    """``fraction(stage, done, total)`` → the whole job's fraction, for a job of ``kind`` that uploads to
    ``uploads`` targets (local folders take the sealed file without an upload)."""

    kind: str
    uploads: int = 1
    read_back: tuple[str, ...] = ()  # targets whose upload is read back once to verify it ("verifying on <name>")
    _phase: tuple[float, float, tuple[Band, ...]] | None = None
    _uploads_seen: list[str] = field(default_factory=list)
    _last: float = 0.0
    _database_part: float | None = None  # of the span database + files share, from the SIZING estimate

    def __post_init__(self) -> None:
        self._phase = PLANS.get(self.kind, {}).get(None)
        if self.kind == "backup" and self.uploads == 0:
            self._phase = (0.0, 1.0, BACKUP_LOCAL)

    def fraction(self, stage: str, done: int, total: int | None) -> float:
        phases = PLANS.get(self.kind, {})
        if stage in phases:
            self._phase = phases[stage]
            self._uploads_seen.clear()
            self._database_part = None
        if stage == SIZING:
            if total:
                part = min(max(done, 0) / total, 1.0)
                self._database_part = min(max(part, MIN_PART), 1 - MIN_PART)
            return self._last
        where = self._where(stage, done, total)
        if where is not None:
            self._last = max(self._last, min(where, 0.99))
        return self._last

    def _where(self, stage: str, done: int, total: int | None) -> float | None:
        if self._phase is None:
            return None
        p_start, p_end, bands = self._phase
        verifying = stage.startswith(VERIFYING)  # a remote copy's one read-back: the last part of its slice
        if verifying:
            stage = "uploading to " + stage[len(VERIFYING):]
        for name, start, end in self._sized(bands):
            if stage == name or (name.endswith(" ") and stage.startswith(name)):
                if name == "uploading to ":  # each target's upload gets its slice of the uploads' share
                    if stage not in self._uploads_seen:
                        self._uploads_seen.append(stage)
                    n = max(self.uploads, len(self._uploads_seen))
                    i = self._uploads_seen.index(stage)
                    start, end = start + (end - start) * i / n, start + (end - start) * (i + 1) / n
                    if stage[len(name):] in self.read_back:  # the upload, then the read-back verifying it
                        cut = start + (end - start) * UPLOAD_PART
                        start, end = (cut, end) if verifying else (start, cut)
                own = min(1.0, done / total) if total else 0.0
                return p_start + (p_end - p_start) * (start + (end - start) * own)
        return None

    def _sized(self, bands: tuple[Band, ...]) -> tuple[Band, ...]:
        """``bands`` with the database and files parts resized by the SIZING estimate, when one came."""
        if self._database_part is None:
            return bands
        spans = {name: (start, end) for name, start, end in bands}
        if "files" not in spans or not any(p in spans for p in DATABASE_PARTS):
            return bands
        first = min(spans[p][0] for p in DATABASE_PARTS if p in spans)
        last = spans["files"][1]
        cut = first + (last - first) * self._database_part
        out = []
        for name, start, end in bands:
            if name in DATABASE_PARTS:
                start, end = first, cut
            elif name == "files":
                start, end = cut, last
            out.append((name, start, end))
        return tuple(out)
