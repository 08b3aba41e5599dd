"""``python -m dbs_admin.sealed``: the rescue CLI (see cli.py)."""

import sys

from dbs_admin.sealed.cli import main

sys.exit(main())
