"""`python -m fdt.teacher`: the `fdt-feedback` command."""

import sys

from fdt.teacher.cli import main

sys.exit(main())
