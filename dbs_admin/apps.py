"""App configuration: the admin section is called "Backups"; ``dbs.py`` modules are discovered here."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DbsAdminConfig(AppConfig):
    name = "dbs_admin"
    label = "dbs_admin"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Import every installed app's dbs.py, as the admin does with admin.py,
        # so declarations are in place before any backup or snapshot runs.
        autodiscover_modules("dbs")
        from dbs_admin.history.signals import connect_signals  # after dbs.py: it connects the models they track
        from dbs_admin.jobs import wiring  # post_migrate schedules, the history hook, the system check

        connect_signals()
        wiring.connect()
