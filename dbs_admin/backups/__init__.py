"""Full backups and restores: capture (logical, native), restore, validation, retention.

The public entry points are in :mod:`dbs_admin.backups.api` (re-exported from
``dbs_admin``); the console's tasks, the management commands and the drills
all call them, so every face of the product runs the same code.
"""
