"""`python -m harness.ops.stack install|up|down|status|restart [service...]` (see manager.py)."""

import sys

from harness.ops.stack.manager import main

sys.exit(main())
