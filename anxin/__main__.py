import sys

from anxin.cli import main

sys.exit(main())
