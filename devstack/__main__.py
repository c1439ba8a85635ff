"""``python -m devstack run|exec|env|stop``."""

from __future__ import annotations

import sys

from devstack.cli import main

sys.exit(main())
