"""Mail the site's ADMINS, and never let a broken mail set-up hide what happened.

Why one place: drills and unattended jobs both alert; the rule is the same
for both. The failure being reported is already recorded (a DrillReport, a
Job); a mail server that is down must not turn into a second, louder error
that replaces it, so it is logged and the caller carries on.
"""

from __future__ import annotations

import logging

from django.core.mail import mail_admins

log = logging.getLogger("dbs_admin")


def mail_admins_or_log(subject: str, body: str, *, about: str) -> bool:
    """``mail_admins(subject, body)``; True if sent. On failure, logs ``could not mail ADMINS about {about}``."""
    try:
        mail_admins(subject, body)
    except Exception:
        log.exception("could not mail ADMINS about %s", about)
        return False
    log.error("%s", subject)
    return True
