"""``python -m seqlrp``: the ``seqlrp`` command."""

import sys

from .cli import main

sys.exit(main())
