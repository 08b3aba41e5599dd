"""The "Backups" section of the Django admin: dashboard, backups, jobs and the audit log.

Every ModelAdmin here is superuser-only (``SuperuserOnlyAdmin``). The pages
that are not lists (Back up now, Restore…, Schedules, downloads) live in
``dbs_admin.console`` and are linked from the dashboard and the lists.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from dbs_admin.console import audit, backup_detail
from dbs_admin.console.access import SuperuserOnlyAdmin, forbidden, is_console_user
from dbs_admin.humanize import human_size
from dbs_admin.models import AuditEvent, Backup, Dashboard, Job


@admin.register(Dashboard)
class DashboardAdmin(SuperuserOnlyAdmin):
    """Renders the console dashboard in place of a change list."""

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not is_console_user(request):
            return forbidden(request)
        from dbs_admin.console import dashboard  # imported when the page is shown: commands never need it

        if request.htmx and request.GET.get("partial") == "jobs":  # the jobs card refreshing itself
            return TemplateResponse(request, "dbs_admin/_dashboard_jobs.html", dashboard.jobs_context())
        context = {
            **self.admin_site.each_context(request),
            "title": "Backups",
            "opts": self.model._meta,
            **dashboard.context(),
        }
        return TemplateResponse(request, "dbs_admin/dashboard.html", context)


@admin.register(Backup)
class BackupAdmin(SuperuserOnlyAdmin):
    # Compact columns, so that all of them (Download · Restore… last) fit a 1280 px window beside the admin's
    # sidebar and the filters; the checksum, key slots and manifest are on the backup's own page ("made" links).
    list_display = ["when", "kind_short", "label", "size_display", "targets", "status_display", "buttons"]
    list_display_links = ["when"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "label", "sha256"]
    date_hierarchy = "created_at"
    actions = ["download", "validate", "restore", "delete_with_files"]
    readonly_fields = [f.name for f in Backup._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("copies")

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None) -> HttpResponse:
        """The backup's own page (``backup_detail``): readable tables and Download · Validate · Restore…"""
        if not is_console_user(request):
            return forbidden(request)
        backup = self.get_object(request, object_id)
        if backup is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        context = {**self.admin_site.each_context(request), "title": backup.name, "opts": self.opts,
                   **backup_detail.context(request, backup)}
        return TemplateResponse(request, "dbs_admin/backup_detail.html", context)

    @admin.display(description="made", ordering="created_at")
    def when(self, obj: Backup) -> str:
        return date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")

    @admin.display(description="kind", ordering="kind")
    def kind_short(self, obj: Backup) -> str:
        return obj.kind

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: Backup) -> str:
        """A file's size; for a repository snapshot, "+added → total" (what it added, the repository's size
        then), a line per repository, each named in full in its title (and on the backup's page)."""
        figures = (obj.manifest or {}).get("repositories") or {}
        if not figures:
            return human_size(obj.size or 0)
        lines = [] if not obj.sha256 else [format_html("{}", human_size(obj.size or 0))]
        for target, numbers in sorted(figures.items()):
            total = numbers.get("total")
            lines.append(format_html(
                '<span class="dbs-snapshot-size" title="snapshot in repository {}: bytes it added → the '
                'repository\'s size then">+{}{}</span>', target, human_size(numbers.get("added") or 0),
                format_html("<br>→ {}", human_size(total)) if total is not None else ""))
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))  # a constant: nothing to escape

    @admin.display(description="sha256")
    def sha256_short(self, obj: Backup) -> str:
        return format_html('<code title="{}">{}…</code>', obj.sha256, obj.sha256[:8]) if obj.sha256 else "—"

    @admin.display(description="copies")
    def targets(self, obj: Backup) -> str:
        """Every copy with its state: a copy that failed says so (its reason is its title)."""
        copies = sorted(obj.copies.all(), key=lambda c: c.target)
        if not copies:
            return "—"
        return format_html_join(", ", '<span title="{}">{}{}</span>', (
            (c.detail, c.target, "" if c.state == c.State.STORED else " (FAILED)") for c in copies))

    @admin.display(description="state", ordering="status")
    def status_display(self, obj: Backup) -> str:
        extra = f", {obj.healed_blocks} block(s) healed" if obj.healed_blocks else ""
        return f"{obj.get_status_display()}{extra}"

    @admin.display(description="")
    def buttons(self, obj: Backup) -> str:
        links = [
            (reverse("dbs_admin:download_link", args=[obj.pk]), "Download"),
            (reverse("dbs_admin:restore") + f"?backup={obj.pk}", "Restore…"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    @admin.action(description="Download the selected backup")
    def download(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one backup to download.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("dbs_admin:download_link", args=[queryset.first().pk]))

    @admin.action(description="Validate the selected backups (queued)")
    def validate(self, request, queryset):
        from dbs_admin.jobs import launch  # here: it brings Celery's sending side and the hand-off's cryptography

        for backup in queryset:
            try:
                job = launch.queue_validate(user=request.user, backup=backup)
            except launch.QueueUnavailable as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return None
            audit.record(request, "validate", backup=backup, detail=f"job {job.pk} queued")
        self.message_user(request, f"Validation queued for {queryset.count()} backup(s); see the dashboard.")

    @admin.action(description="Restore the selected backup…")
    def restore(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one backup to restore.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("dbs_admin:restore") + f"?backup={queryset.first().pk}")

    @admin.action(description="Delete the selected backups and their files on every target")
    def delete_with_files(self, request, queryset):
        if request.POST.get("confirmed") == "yes":
            from dbs_admin.console import deletion  # the targets' code: when a deletion is confirmed

            removed = deletion.delete_backups(request, queryset)
            self.message_user(request, f"Deleted {removed} backup(s) and their files.")
            return None
        context = {
            **self.admin_site.each_context(request), "title": "Delete backups and their files",
            "opts": self.model._meta, "backups": queryset,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "dbs_admin/delete_confirm.html", context)


@admin.register(Job)
class JobAdmin(SuperuserOnlyAdmin):
    list_select_related = ["backup", "created_by"]
    list_display = ["number", "kind", "state", "stage_percent", "when", "by", "backup_link", "message_short"]
    list_filter = ["kind", "state"]
    readonly_fields = [f.name for f in Job._meta.fields]

    @admin.display(description="job", ordering="pk")
    def number(self, obj: Job) -> str:
        """"Job #N", linking to the job's own page (its bar while it runs, its message when it ended)."""
        return format_html('<a href="{}">Job&nbsp;#{}</a>', reverse("dbs_admin:job", args=[obj.pk]), obj.pk)

    @admin.display(description="created", ordering="created_at")
    def when(self, obj: Job) -> str:
        return date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")

    @admin.display(description="by", ordering="created_by")
    def by(self, obj: Job) -> str:
        return str(obj.created_by) if obj.created_by else "beat"

    @admin.display(description="backup")
    def backup_link(self, obj: Job) -> str:
        """A short link to the backup's page (its long file name is the link's title and in the message)."""
        if obj.backup_id is None:
            return "—"
        return format_html('<a href="{}" title="{}">open</a>',
                           reverse("admin:dbs_admin_backup_change", args=[obj.backup_id]), obj.backup.name)

    @admin.display(description="stage", ordering="stage")
    def stage_percent(self, obj: Job) -> str:
        return f"{obj.stage or '—'} ({obj.progress * 100:.0f}%)"

    @admin.display(description="message")
    def message_short(self, obj: Job) -> str:
        return obj.message[:120]


@admin.register(AuditEvent)
class AuditEventAdmin(SuperuserOnlyAdmin):
    """Read-only: the log of who downloaded, restored or deleted what, from where, and how it ended."""

    list_display = ["when", "username", "action", "object_repr", "ip", "outcome", "detail"]
    list_display_links = ["when"]

    @admin.display(description="at", ordering="at")
    def when(self, obj: AuditEvent) -> str:
        return date_format(timezone.localtime(obj.at), "Y-m-d H:i:s")

    list_filter = ["action", "outcome"]
    search_fields = ["username", "action", "object_repr", "detail", "ip"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

