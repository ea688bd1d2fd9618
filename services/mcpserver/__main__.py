import sys

from threadline.services.mcpserver.main import main

sys.exit(main())
