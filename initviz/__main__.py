import sys

from initviz.cli import main

sys.exit(main())
