"""History pages in the admin: versions, compare, restore preview/confirm, image bytes, recover deleted.

Add :class:`HistoryAdminMixin` to the ModelAdmin of a tracked model. Its
*History* button (the admin's own ``history/`` URL) then lists the stored
versions for superusers; other staff keep Django's action log there. Every
page that shows stored content or image bytes is superuser-only
(``is_console_user``): history holds full content, including drafts and
images that were removed from the site.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from dbs_admin.console import audit
from dbs_admin.console.access import SuperuserOnlyAdmin, forbidden, is_console_user
from dbs_admin.history import context
from dbs_admin.history.collect import model_label
from dbs_admin.history.errors import HistoryError
from dbs_admin.history.snapshot import describe_summary, history_in_folder, resolve_history
from dbs_admin.history.store import META
from dbs_admin.models import AuditEvent, HistoryVersion

PAGE_SIZE = 25


def version_labels(history: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each version as people read it: "version 3 · 2026-12-07 11:35:46 · boss", numbered oldest first, its time
    from the index row in the site's time zone and format, exactly as the versions list shows it."""
    rows = {r.version_id: r for r in HistoryVersion.objects.filter(model_label=history.label,
                                                                   object_key=history.dir.name)}
    out = {}
    for number, vid in enumerate(ids, 1):
        row = rows.get(vid)
        when = date_format(timezone.localtime(row.created_at), "Y-m-d H:i:s") if row else ""
        who = row.username if row and row.username else ""
        out[vid] = {"number": number, "when": when, "who": who,
                    "label": " · ".join(x for x in (f"version {number}", when, who) if x)}
    return out


class HistoryAdminMixin:
    """Per-object version history for a ModelAdmin whose model is passed to ``track_history``."""

    change_list_template = "dbs_admin/history/change_list.html"

    # -- acting user for snapshots made by admin saves ------------------------------------------
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with context.acting_user(request.user):
            return super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with context.acting_user(request.user):
            return super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "dbs_history_can_recover": is_console_user(request)}
        with context.acting_user(request.user):
            return super().changelist_view(request, extra_context)

    # -- urls -------------------------------------------------------------------------------------
    def _url_name(self, name: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_dbs_history_{name}"

    def get_urls(self) -> list:
        wrap: Callable = lambda view: self.admin_site.admin_view(self._console_only(view))  # noqa: E731
        return [
            path("dbs-history/deleted/", wrap(self.deleted_view), name=self._url_name("deleted")),
            path("dbs-history/deleted/<str:folder>/", wrap(self.recover_view), name=self._url_name("recover")),
            path("dbs-history/image/<str:folder>/<path:stored>", wrap(self.image_view), name=self._url_name("image")),
            path("<path:object_id>/history/compare/", wrap(self.compare_view), name=self._url_name("compare")),
            path("<path:object_id>/history/restore/<str:version_id>/", wrap(self.restore_view),
                 name=self._url_name("restore")),
            *super().get_urls(),
        ]

    def _console_only(self, view: Callable) -> Callable:
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not is_console_user(request):
                return forbidden(request)
            return view(request, *args, **kwargs)

        return checked

    def _reverse(self, name: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:{self._url_name(name)}", args=args)

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **extra}

    def _object_or_404(self, request: HttpRequest, object_id: str) -> Any:
        """The object, or 404 for an id that is not one (``x``, a slug, a huge number): never a 500."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with that id.")
        return obj

    def _history_of(self, obj: Any) -> Any:
        from dbs_admin.history.collect import capture_instance

        return resolve_history(self.model, obj.pk, capture_instance(obj))

    # -- pages ------------------------------------------------------------------------------------
    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        if not is_console_user(request) or request.GET.get("log"):
            return super().history_view(request, object_id, extra_context)
        obj = self._object_or_404(request, object_id)
        history = self._history_of(obj)
        rows = HistoryVersion.objects.filter(model_label=history.label, object_key=history.dir.name).order_by(
            "-created_at", "-version_id"
        )
        page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
        numbers = {vid: i for i, vid in enumerate(history.versions(), 1)}
        versions = [
            {"row": row, "what": describe_summary(row.summary), "number": numbers.get(row.version_id, "?"),
             "restore_url": self._reverse("restore", obj.pk, row.version_id)}
            for row in page
        ]
        return TemplateResponse(request, "dbs_admin/history/versions.html", self._context(
            request, f"History: {obj}", object=obj, page=page, versions=versions,
            time_zone=timezone.get_current_timezone_name(),
            compare_url=self._reverse("compare", obj.pk), folder=history.dir.relative_to(history.root).as_posix(),
        ))

    def compare_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object_or_404(request, object_id)
        history = self._history_of(obj)
        ids = history.versions()
        if not ids:
            raise Http404("This object has no stored versions yet.")
        a = request.GET.get("a") or (ids[-2] if len(ids) > 1 else ids[-1])
        b = request.GET.get("b") or ids[-1]
        if a not in ids or b not in ids:
            raise Http404("No such version.")
        old, new = history.read(a), history.read(b)
        from dbs_admin.history.diff import diff_documents  # here, as the restore below: only these pages use them

        diff = diff_documents(old, new, {f.name for f in self.model._meta.many_to_many})
        image_url = lambda e: self._reverse("image", history.dir.name, e["stored"]) if e.get("stored") else ""  # noqa: E731
        labels = version_labels(history, ids)
        return TemplateResponse(request, "dbs_admin/history/compare.html", self._context(
            request, f"Compare versions: {obj}", object=obj, a=a, b=b, diff=diff,
            versions=[(vid, labels[vid]["label"]) for vid in reversed(ids)], label_a=labels[a], label_b=labels[b],
            meta_a=old.get(META, {}), meta_b=new.get(META, {}), time_zone=timezone.get_current_timezone_name(),
            images_added=[{**e, "url": image_url(e)} for e in diff.images_added],
            images_removed=[{**e, "url": image_url(e)} for e in diff.images_removed],
            history_url=reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_history",
                                args=[obj.pk]),
            restore_a=self._reverse("restore", obj.pk, a), restore_b=self._reverse("restore", obj.pk, b),
        ))

    def restore_view(self, request: HttpRequest, object_id: str, version_id: str) -> HttpResponse:
        obj = self._object_or_404(request, object_id)
        history = self._history_of(obj)
        back = reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_history", args=[obj.pk])
        return self._restore_page(request, history.dir.name, version_id, back, f"Restore {obj}")

    def deleted_view(self, request: HttpRequest) -> HttpResponse:
        label = model_label(self.model)
        groups = (
            HistoryVersion.objects.filter(model_label=label, object_deleted=True)
            .values("object_key").annotate(last=Max("created_at"), versions=Count("id")).order_by("-last")
        )
        page = Paginator(groups, PAGE_SIZE).get_page(request.GET.get("page"))
        keys = [g["object_key"] for g in page]
        titles: dict[str, str] = {}
        for row in HistoryVersion.objects.filter(model_label=label, object_key__in=keys).order_by("created_at"):
            titles[row.object_key] = row.title
        items = [{**g, "title": titles.get(g["object_key"], ""), "url": self._reverse("recover", g["object_key"])}
                 for g in page]
        return TemplateResponse(request, "dbs_admin/history/deleted.html", self._context(
            request, f"Recover deleted {self.opts.verbose_name_plural}", page=page, items=items,
        ))

    def recover_view(self, request: HttpRequest, folder: str) -> HttpResponse:
        if not HistoryVersion.objects.filter(model_label=model_label(self.model), object_key=folder).exists():
            raise Http404("No history for this object.")
        return self._restore_page(request, folder, request.GET.get("version") or request.POST.get("version"),
                                  self._reverse("deleted"), f"Recover {folder}")

    def _restore_page(self, request: HttpRequest, folder: str, version_id: str | None, back: str, title: str
                      ) -> HttpResponse:
        # here, not at import: the admin's autodiscovery imports this module at every start, commands included
        from dbs_admin.history.revert import apply_restore, plan_restore

        try:
            plan = plan_restore(self.model, folder, version_id)
        except HistoryError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(back)
        if request.method == "POST":
            action = "history-recover" if plan.target is None else "history-restore"
            what = f"{model_label(self.model)} {folder} to version {plan.version_id}"
            try:
                result = apply_restore(plan_restore(self.model, folder, plan.version_id), user=request.user)
            except HistoryError as exc:
                audit.record(request, action, outcome=AuditEvent.Outcome.FAILED, object_repr=what, detail=str(exc))
                messages.error(request, f"Nothing was restored: {exc}")
                return HttpResponseRedirect(request.get_full_path())
            audit.record(request, action, object_repr=what,
                         detail=f"{result.obj}: {result.images_written} image file(s) written")
            messages.success(request, f"Restored {result.obj} to version {plan.version_id}"
                                      f" ({result.images_written} image files written).")
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_history",
                        args=[result.obj.pk])
            )
        return TemplateResponse(request, "dbs_admin/history/restore.html", self._context(
            request, title, plan=plan, lines=plan.lines(), back=back,
            action=request.get_full_path(),
        ))

    def image_view(self, request: HttpRequest, folder: str, stored: str) -> HttpResponse:
        try:
            history = history_in_folder(self.model, folder)
            file_path = history.image_path(stored)
        except HistoryError as exc:
            raise Http404(str(exc)) from exc
        if not history.dir.is_dir() or not file_path.is_file():
            raise Http404("No such stored image.")
        response = FileResponse(open(file_path, "rb"), content_type=mimetypes.guess_type(file_path.name)[0]
                                or "application/octet-stream")
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response



@admin.register(HistoryVersion)
class HistoryVersionAdmin(SuperuserOnlyAdmin):
    """Every stored version of every tracked model, searchable; links to each object's history or recovery."""

    list_display = ["model_label", "object_key", "version", "created_at", "username", "what", "object_deleted",
                    "open"]
    list_filter = ["model_label", "object_deleted"]
    search_fields = ["object_key", "title", "username"]
    date_hierarchy = "created_at"
    list_per_page = 50

    @admin.display(description="version", ordering="version_id")
    def version(self, row: HistoryVersion) -> str:
        """"first version" or "edit", the stored folder's name as its tooltip (not the label itself)."""
        return format_html('<span title="{}">{}</span>', row.version_id,
                           "first version" if row.version_id == "initial" else "edit")

    @admin.display(description="What changed")
    def what(self, row: HistoryVersion) -> str:
        return describe_summary(row.summary)

    @admin.display(description="")
    def open(self, row: HistoryVersion) -> str:
        app_label, model_name = row.model_label.split(".", 1)
        try:
            if row.object_deleted:
                url = reverse(f"admin:{app_label}_{model_name}_dbs_history_recover", args=[row.object_key])
                return format_html('<a href="{}">Recover…</a>', url)
            return format_html('<a href="{}">History</a>',
                               reverse(f"admin:{app_label}_{model_name}_history", args=[row.object_pk]))
        except NoReverseMatch:
            return ""
