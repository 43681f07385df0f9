"""`python -m peanut`, the same as the `peanut` console script."""
import sys

from peanut.cli import main

sys.exit(main())
