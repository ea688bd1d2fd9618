"""``python -m threadline.services.cli NAME ...`` is the same as ``threadline NAME ...``."""

from threadline.services.cli.main import main

raise SystemExit(main())
