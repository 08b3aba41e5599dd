"""Error pages and mailed error reports never show a passphrase, with DEBUG on as well as off.

Why our own filter: Django's ``SafeExceptionReporterFilter`` hides what
``sensitive_post_parameters`` and ``sensitive_variables`` name only when DEBUG
is off, and only in the frames that carry the decorators; a passphrase also
passes through frames of other code (the hand-off's encryption, the database
driver) on its way. So for console requests this filter is always active, and
it hides every frame variable whose value contains a posted secret, whatever
the variable is called.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


def posted_secrets(request: HttpRequest | None) -> list[str]:
    """The non-empty POST values ``sensitive_post_parameters`` marked on this request."""
    names = getattr(request, "sensitive_post_parameters", None) if request is not None else None
    if not names or request.method != "POST":
        return []
    try:
        keys = list(request.POST) if names == "__ALL__" else names
        return [v for k in keys for v in request.POST.getlist(k) if v]
    except Exception:  # noqa: BLE001 - the body itself failed to parse: hide every local variable instead
        return ["\x00unreadable"]


def _holds(value, secrets: list[str]) -> bool:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value that cannot say what it is may hold anything
        return True
    raw = value if isinstance(value, bytes | bytearray | memoryview) else b""
    return any(s in text or (raw and s.encode() in bytes(raw)) for s in secrets)


class SecretsFilter(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        secrets = posted_secrets(request)
        if not secrets:
            return variables
        if secrets == ["\x00unreadable"]:
            return [(name, self.cleansed_substitute) for name, _ in variables]
        return [(name, self.cleansed_substitute if _holds(value, secrets) else value) for name, value in variables]


def protect(request: HttpRequest) -> None:
    """Use :class:`SecretsFilter` for whatever goes wrong while this request is handled."""
    request.exception_reporter_filter = SecretsFilter()
