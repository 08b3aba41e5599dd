"""Forms of the console pages (no secrets are ever rendered back: password inputs never keep their value)."""

from __future__ import annotations

from django import forms

from dbs_admin.backups.sealing_keys import can_seal_without_passphrase
from dbs_admin.conf import dbs_settings
from dbs_admin.jobs import schedules
from dbs_admin.models import Backup

MIN_PASSPHRASE = 10


def target_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({conf.get('kind', '?')})") for name, conf in dbs_settings.TARGETS.items()]


class BackupNowForm(forms.Form):
    KEY_PASSPHRASE, KEY_RECIPIENTS = "passphrase", "recipients"

    kind = forms.ChoiceField(choices=Backup.Kind.choices, initial=Backup.Kind.LOGICAL)
    target = forms.ChoiceField(choices=())
    copies = forms.MultipleChoiceField(choices=(), required=False, label="Also copy to",
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="Each copy is verified on its own; one that fails does not fail "
                                                 "the others.")
    label = forms.CharField(max_length=60, required=False)
    key = forms.ChoiceField(
        choices=[(KEY_PASSPHRASE, "A passphrase"), (KEY_RECIPIENTS, "The configured recipient keys")],
        initial=KEY_PASSPHRASE, widget=forms.RadioSelect, label="Encrypt with",
    )
    passphrase = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                                 help_text=f"At least {MIN_PASSPHRASE} characters. Keep it safe: without it "
                                           "(or a recipient's identity) the backup cannot be opened.")
    passphrase_again = forms.CharField(required=False, strip=False, label="Passphrase (again)",
                                       widget=forms.PasswordInput(render_value=False))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = target_choices()
        self.fields["target"].initial = dbs_settings.DEFAULT_TARGET
        self.fields["copies"].choices = target_choices()

    def clean(self) -> dict:
        data = super().clean()
        data["copies"] = [t for t in data.get("copies") or [] if t != data.get("target")]
        if data.get("key") == self.KEY_RECIPIENTS:
            if not can_seal_without_passphrase():
                raise forms.ValidationError("No recipient keys are configured (DBS_ADMIN['RECIPIENTS']); "
                                            "use a passphrase.")
            data["passphrase"] = None
        else:
            p = data.get("passphrase") or ""
            if len(p) < MIN_PASSPHRASE:
                self.add_error("passphrase", f"Use at least {MIN_PASSPHRASE} characters.")
            elif p != data.get("passphrase_again"):
                self.add_error("passphrase_again", "The two passphrases differ.")
        return data


HOURS = [(f"{h:02d}:{m:02d}", f"{h:02d}:{m:02d}") for h in range(24) for m in (0, 15, 30, 45)]
WEEKDAYS = [("1", "Monday"), ("2", "Tuesday"), ("3", "Wednesday"), ("4", "Thursday"), ("5", "Friday"),
            ("6", "Saturday"), ("0", "Sunday")]


class TargetScheduleForm(forms.Form):
    """Daily backup time and retention of one target; it can be switched on only once it can run."""

    enabled = forms.BooleanField(required=False, label="Daily backup")
    at = forms.TimeField(label="at (HH:MM)", widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}))
    copies = forms.MultipleChoiceField(choices=(), required=False, label="also copy to",
                                       widget=forms.CheckboxSelectMultiple)
    keep_last = forms.IntegerField(min_value=1, max_value=1000, label="keep last")
    keep_daily = forms.IntegerField(min_value=0, max_value=1000, label="daily")
    keep_weekly = forms.IntegerField(min_value=0, max_value=1000, label="weekly")
    keep_monthly = forms.IntegerField(min_value=0, max_value=1000, label="monthly")

    def __init__(self, *args, target: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["copies"].choices = [c for c in target_choices() if c[0] != target]

    def clean_enabled(self) -> bool:
        enabled = self.cleaned_data["enabled"]
        if enabled and not schedules.backup_can_run():
            raise forms.ValidationError(schedules.BACKUP_BLOCKED)
        return enabled


class DrillScheduleForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Weekly restore drill")
    weekday = forms.ChoiceField(choices=WEEKDAYS, label="on")
    at = forms.TimeField(label="at (HH:MM)", widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}))

    def clean_enabled(self) -> bool:
        enabled = self.cleaned_data["enabled"]
        if enabled and not schedules.drill_can_run():
            raise forms.ValidationError(schedules.DRILL_BLOCKED)
        return enabled
