"""Restore drills: restore a backup into a scratch database, check it, record the result, alert on failure.

A backup that has never been restored is not a recovery plan. The pieces,
one job each: ``scratch`` (the throw-away database and its clean-up),
``checks`` (what a good restore looks like), ``runner`` (the drill),
``report`` (the records), ``health`` (RPO and last drill, for the system
check, ``dbs_status`` and the status view), ``alerts`` (mail to ADMINS),
``identity`` (the unattended drill's key). The Celery task and the weekly
default schedule are in ``dbs_admin.jobs``; the pages in ``dbs_admin.console``.

Import the functions from their modules; this package imports nothing
heavy so Django can load it early.
"""

from __future__ import annotations


def latest_drill(*, finished: bool = True):
    """The newest drill report (see :func:`dbs_admin.drills.report.latest_drill`)."""
    from dbs_admin.drills.report import latest_drill as _latest

    return _latest(finished=finished)
