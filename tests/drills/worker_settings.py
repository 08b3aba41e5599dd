"""Settings of the Celery worker the drill tests start: the demo's, with the test's DBS_ADMIN (from JSON)."""

import json
import os

from demo_site.settings import *  # noqa: F403

DBS_ADMIN = json.loads(os.environ["DBS_TEST_DBS_ADMIN"])
