"""Allow ``python -m vla_edge``."""

import sys

from vla_edge.cli import main

sys.exit(main())
