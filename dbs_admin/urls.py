"""URLs of the console outside the ModelAdmins (downloads, status); include under any prefix."""

from __future__ import annotations

app_name = "dbs_admin"

urlpatterns: list = []
