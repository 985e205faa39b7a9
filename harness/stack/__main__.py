"""`python -m harness.stack install|up|down|status|restart [service...]` (see manager.py)."""

import sys

from harness.stack.manager import main

sys.exit(main())
