"""python -m pathssl.cli"""

import sys

from pathssl.cli import main

sys.exit(main())
