"""`python -m zcore_fast.cli`, the same as the `zcore-fast` command."""

import sys

from zcore_fast.cli.main import main

sys.exit(main())
