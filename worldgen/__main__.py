import sys

from worldgen.cli.main import main

sys.exit(main())
