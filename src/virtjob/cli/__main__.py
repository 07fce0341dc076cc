"""``python -m virtjob.cli``."""

import sys

from virtjob.cli import main

sys.exit(main())
