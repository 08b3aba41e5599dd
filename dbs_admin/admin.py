"""The entry point Django's admin autodiscovery looks for (``<app>.admin``): it registers the console's pages.

The ModelAdmins live in :mod:`dbs_admin.console` (backups, jobs, audit log,
drills). ``HistoryAdminMixin`` is re-exported here for the ModelAdmins of
tracked models: ``from dbs_admin.admin import HistoryAdminMixin``.
"""

from dbs_admin.console import backup_admin, drill_admin  # noqa: F401  (registers the ModelAdmins)
from dbs_admin.console.history_admin import HistoryAdminMixin

__all__ = ["HistoryAdminMixin"]
