import sys

from smartpix.cli import main

sys.exit(main())
