"""Connected from ``DbsAdminConfig.ready()``: the recoverability system check and the default drill schedule."""

from __future__ import annotations

from django.db.models.signals import post_migrate

from dbs_admin.drills import system_checks  # noqa: F401  (registers the check on import)
from dbs_admin.drills.schedule import on_post_migrate

post_migrate.connect(on_post_migrate, dispatch_uid="dbs_admin.drills.default_schedule")
