import sys

from editledger.cli import main

sys.exit(main())
