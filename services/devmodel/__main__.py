"""``python -m threadline.services.devmodel``."""

import sys

from .cli import main

sys.exit(main())
