"""``python -m virtjob.daemon``: run virtjobd."""

import sys

from virtjob.daemon import main

sys.exit(main())
