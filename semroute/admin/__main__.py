import sys

from semroute.admin.cli import main

sys.exit(main())
