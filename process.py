"""Grand-Challenge entry point (the container's ENTRYPOINT): a thin shell around pathssl.

    python process.py [--input /input] [--output /output] [--model DIR]

With /input/inputs.json it runs one Grand-Challenge job; without it, every slide under
/input, one folder each under /output. See README.md.
"""

import sys
from pathlib import Path

try:
    from pathssl.grand_challenge.run import main
except ImportError:  # a clean checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from pathssl.grand_challenge.run import main

if __name__ == "__main__":
    sys.exit(main())
