"""Settings of the demo site, read from the environment with safe defaults.

- ``DATABASE_URL``: any dj-database-url URL (sqlite://, postgres://, mysql://); default SQLite under ``var/``.
- ``REDIS_URL``: Celery broker; default the filesystem transport under ``var/``.
- ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``, ``DJANGO_ALLOWED_HOSTS``, ``DBS_VAR_DIR``.
- ``DBS_DEMO_KEYS=0``: ignore the demo's keys in ``var/keys`` (the test suite sets it).
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DBS_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-secret-key-change-me-in-production-0123456789")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_beat",
    "dbs_admin",
    "blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_default_sqlite = f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", _default_sqlite), conn_max_age=0)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so Celery workers started by tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
elif DATABASES["default"]["ENGINE"].endswith("mysql"):
    # utf8mb4 both ways: Django's default, utf8, is MariaDB's 3-byte utf8mb3, which cannot hold an emoji.
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4", **DATABASES["default"].get("OPTIONS", {})}
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))

LOGIN_URL = "admin:login"

# --- Celery -----------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# The queue dbs_admin's tasks go to and workers read (a test run uses one of its own, so two runs on one
# broker never take each other's messages).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("DBS_CELERY_QUEUE", "celery")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Redis gives an unacknowledged message to another worker only after this long; it must outlast the
    # longest job (dbs_admin's hard time limit is 6 h 5 min), or a running backup would start twice. A
    # message held by a worker that died is sent again sooner by dbs_admin's reaper (JOB_QUEUE_TIMEOUT).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("DBS_VISIBILITY_TIMEOUT", 7 * 3600))}
else:
    _broker = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's filesystem transport reads and writes messages in one folder.
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "store_processed": False,
        "control_folder": str(_broker / "control"),
    }
# Job state lives in dbs_admin's own models; no result backend is needed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Long jobs (README, "Celery for long jobs"): a message is acknowledged when its task ends and given back when
# the worker process dies; a worker reserves no message beyond the one it runs, so a queued job never waits
# behind a busy (or dead) worker while another is free; a broker away for a while is waited for, not fatal.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None

# --- dbs_admin --------------------------------------------------------------
DBS_ADMIN = {
    "TARGETS": {"local": {"kind": "local", "path": str(VAR_DIR / "dbs_backups")}},
    "PRIVATE_ROOT": str(VAR_DIR / "dbs_private"),
    "HISTORY_ROOT": str(VAR_DIR / "dbs_history"),
}
# DBS_DEMO_REPOSITORY=1 adds a repository target (incremental snapshots, README "Repository targets"): the
# console tests start their workers with it, and a demo can show snapshots beside files.
if os.environ.get("DBS_DEMO_REPOSITORY") == "1":
    DBS_ADMIN["TARGETS"]["repository"] = {"kind": "local", "path": str(VAR_DIR / "dbs_repository"),
                                          "format": "repository"}

# The demo's unattended keys, made once by `make demo` (scripts/demo.sh runs `manage.py dbs_keys init --dir
# var/keys`): scheduled backups are sealed to the recipient and drills open them with the identity. On a real
# site these are the lines `dbs_keys init` prints, and the passphrase lives in the worker's environment; here
# var/keys/drill.env (0600) stands in for that environment, so every process of the demo (web, worker, beat,
# a shell running manage.py) has it.
DEMO_KEYS = VAR_DIR / "keys"
DEMO_KEYS_LOADED = os.environ.get("DBS_DEMO_KEYS", "1") == "1" and (DEMO_KEYS / "drill.identity").is_file()
if DEMO_KEYS_LOADED:
    DBS_ADMIN["RECIPIENTS"] = [(DEMO_KEYS / "drill.identity.recipient").read_text().strip()]
    DBS_ADMIN["DRILL_IDENTITY"] = str(DEMO_KEYS / "drill.identity")
    for _line in (DEMO_KEYS / "drill.env").read_text().splitlines():
        _name, _, _value = _line.partition("=")
        if _name.strip() and _value:
            os.environ.setdefault(_name.strip(), _value.strip())

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"dbs_admin": {"handlers": ["console"], "level": os.environ.get("DBS_LOG_LEVEL", "INFO")}},
}
