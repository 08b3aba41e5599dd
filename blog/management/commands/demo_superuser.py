"""``manage.py demo_superuser``: make (or reset) the demo's superuser and print its login.

A fresh random password on every run keeps the demo from shipping a known
password, and nothing is written to disk: the terminal is the only copy.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or reset the demo superuser with a new random password and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"Superuser {'created' if created else 'reset'}: login '{username}', password '{password}'")
