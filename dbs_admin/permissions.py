"""Who may use the console: superusers only, everywhere.

Backups hold every row and file of the site, including password hashes, so
"staff" is not enough. One predicate keeps views, admin pages and downloads
consistent.
"""

from __future__ import annotations

from django.http import HttpRequest


def is_console_user(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_superuser)
