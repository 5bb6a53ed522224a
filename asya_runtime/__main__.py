"""`python -m asya_runtime ...` is `asya-runtime ...`."""

import sys

from .cli import main

sys.exit(main())
