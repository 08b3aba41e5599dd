"""The Drills list of the console: read-only reports with their checks, the RTO trend, a *Run drill* button."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt

from dbs_admin.conf import dbs_settings
from dbs_admin.console.access import SuperuserOnlyAdmin, forbidden, is_console_user
from dbs_admin.console.error_reports import protect
from dbs_admin.console.rto_chart import rto_chart
from dbs_admin.drills.report import rto_words
from dbs_admin.models import DrillCheck, DrillReport


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h" if value < 172800 else f"{value / 86400:.1f} days"


class DrillCheckInline(admin.TabularInline):
    model = DrillCheck
    extra = 0
    can_delete = False
    fields = ("order", "name", "verdict", "seconds", "detail_block", "sample_block")
    readonly_fields = fields

    def has_view_permission(self, request, obj=None) -> bool:
        return is_console_user(request)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="result")
    def verdict(self, check: DrillCheck) -> str:
        return "passed" if check.passed else "FAILED"

    @admin.display(description="detail")
    def detail_block(self, check: DrillCheck) -> str:
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', check.detail)

    @admin.display(description="objects checked")
    def sample_block(self, check: DrillCheck) -> str:
        """A smoke check's sample: per model, the pks checked in order (the seed reproduces them)."""
        return format_html_join(
            "", '<p class="dbs-sample" style="margin: 0 0 4px">{}: {}</p>',
            ((s["model"], _checked(s)) for s in (check.sample or {}).get("samples", [])),
        ) or "-"


def _checked(sample: dict) -> str:
    if "checked" not in sample:
        return f"all {sample.get('checked_count', 0)}"
    pks = ", ".join(str(pk) for pk in sample["checked"])
    return f"pks {pks} ({len(sample['checked'])} of {sample.get('total', '?')})"


@admin.register(DrillReport)
class DrillReportAdmin(SuperuserOnlyAdmin):
    # Compact, so every column fits a 1280 px window beside the sidebar and filters (the engine and the host
    # that ran the drill are filters: with several workers, "which host restores slowly" is a click).
    list_display = ("number", "when", "backup_name", "verdict", "failed_checks", "times", "rpo")
    list_display_links = ("number", "when")
    list_filter = ("passed", "engine", "worker")
    search_fields = ("backup_name",)
    date_hierarchy = "started_at"
    inlines = [DrillCheckInline]
    fields = ("backup_name", "backup", "job", "verdict", "started_at", "finished_at", "rto", "total",
              "steps_total", "rpo", "smoke", "engine", "worker", "scratch_database", "error")
    readonly_fields = fields
    change_list_template = "dbs_admin/drills/change_list.html"

    @admin.display(description="drill", ordering="pk")
    def number(self, report: DrillReport) -> str:
        """"Drill #N", the number the job's message, the alerts and ``dbs_drill`` use; its job is "Job #M"."""
        return f"Drill\u00a0#{report.pk}" + (f" (job\u00a0#{report.job_id})" if report.job_id else "")

    @admin.display(description="started", ordering="started_at")
    def when(self, report: DrillReport) -> str:
        return date_format(timezone.localtime(report.started_at), "Y-m-d H:i")

    @admin.display(description="result", ordering="passed")
    def verdict(self, report: DrillReport) -> str:
        return "running" if report.passed is None else ("passed" if report.passed else "FAILED")

    @admin.display(description="failed checks")
    def failed_checks(self, report: DrillReport) -> str:
        failed = ", ".join(c.name for c in report.checks.all() if not c.passed)
        return failed or ("-" if report.passed is not False else report.error[:80])

    @admin.display(description="restore time (RTO)", ordering="restore_seconds")
    def rto(self, report: DrillReport) -> str:
        """The RTO, and what it measured in its title (each step's time; a snapshot's export, and what it adds)."""
        return format_html('<span class="dbs-rto" title="{}">{}</span>', rto_words(report),
                           _seconds(report.restore_seconds))

    @admin.display(description="restore (RTO) / whole drill", ordering="restore_seconds")
    def times(self, report: DrillReport) -> str:
        return format_html('<span class="dbs-rto" title="{}">{}</span> / {}', rto_words(report),
                           _seconds(report.restore_seconds), _seconds(report.total_seconds))

    @admin.display(description="drill time (total)", ordering="total_seconds")
    def total(self, report: DrillReport) -> str:
        return _seconds(report.total_seconds)

    @admin.display(description="time of the steps")
    def steps_total(self, report: DrillReport) -> str:
        """The sum of the checks below (the rest of the total: scratch database, records, clean-up)."""
        return _seconds(sum(c.seconds for c in report.checks.all()))

    @admin.display(description="smoke checks")
    def smoke(self, report: DrillReport) -> str:
        if report.smoke_full:
            return "every object (full smoke)"
        if report.smoke_seed is None:
            return "-"
        copy = report.backup.copies.order_by("target").first() if report.backup else None
        where = f"{report.backup_name} --target {copy.target}" if copy else report.backup_name
        return (f"sampled with seed {report.smoke_seed}: `manage.py dbs_drill {where} "
                f"--smoke-seed {report.smoke_seed}` checks the same objects")

    @admin.display(description="backup age (RPO)", ordering="backup_age_seconds")
    def rpo(self, report: DrillReport) -> str:
        return _seconds(report.backup_age_seconds)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("checks")

    def get_urls(self):
        run = path("run/", self.admin_site.admin_view(self.run_view), name="dbs_admin_drillreport_run")
        return [run, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        from dbs_admin.drills.identity import drill_identity_configured  # its key code: when the page is shown

        extra = {"rto_chart": rto_chart(), "targets": list(dbs_settings.TARGETS),
                 "default_target": dbs_settings.DEFAULT_TARGET, "drill_key_configured": drill_identity_configured(),
                 **(extra_context or {})}
        return super().changelist_view(request, extra)

    @method_decorator(csrf_exempt)  # drill_views checks CSRF itself, after installing its upload handler
    def run_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the Run drill form. POST: queue a drill of the newest backup of the chosen target."""
        protect(request)
        if not is_console_user(request):
            return forbidden(request)
        from dbs_admin.console.drill_views import run_drill_view  # its forms and keys: when the page is used

        return run_drill_view(request)
