"""This host's name, as recorded with workers, jobs, drills and copies on per-host folders.

Why a setting rather than ``socket.gethostname()`` alone: containers often
get random host names, and several workers on one machine may stand for
different hosts (tests, staging). ``DBS_ADMIN["HOST_NAME"]`` (default: the
``DBS_HOST_NAME`` environment variable, else the machine's host name) says
which disk a worker's local folders are on.
"""

from __future__ import annotations

from dbs_admin.conf import dbs_settings


def this_host() -> str:
    return str(dbs_settings.HOST_NAME)[:255]
