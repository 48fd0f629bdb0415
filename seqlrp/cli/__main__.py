"""``python -m seqlrp.cli``: the ``seqlrp`` command."""

import sys

from . import main

sys.exit(main())
