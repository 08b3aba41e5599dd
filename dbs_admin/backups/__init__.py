"""Full backups and restores: capture (logical, native), restore, validation, retention.

The public entry points are in :mod:`dbs_admin.backups.api` (re-exported from
``dbs_admin``); the jobs behind the console, the management commands and the
drills all call them, so every face of the product runs the same code. A
service: no Celery, no requests, no argument parsing (``make lint`` checks).
"""
