"""`python -m bench [--quick] [--sections a,b] [--out DIR]` — see bench/run.py."""

import sys

from bench.run import main

sys.exit(main())
