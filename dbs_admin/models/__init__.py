"""Records of the backup console, one module per concern.

Job state lives here rather than in a Celery result backend, so the admin
never depends on one. Nothing here ever stores a passphrase or a raw key.
"""

from .audit import AuditEvent
from .backup import Backup, BackupCopy
from .console import HandoffSecret, TargetLock
from .dashboard import Dashboard
from .drill import DrillCheck, DrillReport
from .history import HistoryVersion
from .job import Job

__all__ = [
    "AuditEvent", "Backup", "BackupCopy", "Dashboard", "DrillCheck", "DrillReport", "HistoryVersion", "Job",
    "HandoffSecret", "TargetLock",
]
