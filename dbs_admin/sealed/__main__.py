"""``python -m dbs_admin.sealed``: the rescue CLI (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
