"""python -m cli ...: the `taskcounts` command (./taskcounts is its launcher)."""

import sys

from cli.taskcounts import main

sys.exit(main())
