import sys

from handler.cli.main import main

sys.exit(main())
