"""`python -m alfrd_daemon` is the `alfrd` command."""

import sys

from alfrd_daemon.cli.main import main

sys.exit(main())
