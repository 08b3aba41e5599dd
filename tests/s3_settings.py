"""The demo's settings plus an S3 storage target on the test S3 server, for commands run in a subprocess.

``DBS_TEST_S3_ENDPOINT`` and ``DBS_TEST_S3_BUCKET`` name the server and bucket (tests.services.s3_server);
the credentials are the test server's, passed the way a site would: in the storage's OPTIONS.
"""

import os

from demo_site.settings import *  # noqa: F403
from demo_site.settings import DBS_ADMIN

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "backups": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": os.environ["DBS_TEST_S3_BUCKET"], "endpoint_url": os.environ["DBS_TEST_S3_ENDPOINT"],
        "access_key": "dbs-test-access", "secret_key": "dbs-test-secret", "region_name": "us-east-1",
    }},
}
DBS_ADMIN = {**DBS_ADMIN, "TARGETS": {**DBS_ADMIN["TARGETS"], "s3": {"kind": "storage", "storage": "backups"}},
             "RECIPIENTS": [os.environ["DBS_TEST_RECIPIENT"]]}
