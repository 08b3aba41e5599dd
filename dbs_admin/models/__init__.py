"""Records of the backup console, one module per concern.

Job state lives here rather than in a Celery result backend, so the admin
never depends on one. Nothing here ever stores a passphrase or a raw key.
"""

from dbs_admin.models.audit import AuditEvent
from dbs_admin.models.backup import Backup, BackupCopy
from dbs_admin.models.console import HandoffSecret, TargetLock
from dbs_admin.models.dashboard import Dashboard
from dbs_admin.models.drill import DrillCheck, DrillReport
from dbs_admin.models.history import HistoryTick, HistoryVersion
from dbs_admin.models.job import Job, ScheduleTick, WorkerHost

__all__ = [
    "AuditEvent", "Backup", "BackupCopy", "Dashboard", "DrillCheck", "DrillReport", "HistoryTick", "HistoryVersion",
    "Job", "HandoffSecret", "ScheduleTick", "TargetLock", "WorkerHost",
]
