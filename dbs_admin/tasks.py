"""Celery tasks of dbs_admin.

Celery's autodiscovery imports ``<app>.tasks``; each concern keeps its tasks
beside its services and is imported here. Tasks stay thin: they call the same
service functions as the management commands.
"""
