import sys

from semroute.cli import main

sys.exit(main())
