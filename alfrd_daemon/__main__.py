"""`python -m alfrd_daemon` is the `alfrd` command."""

import sys

from .cli import main

sys.exit(main())
