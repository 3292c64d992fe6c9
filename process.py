"""Grand-Challenge entry point (the container's ENTRYPOINT): a thin shell around pathssl.

    python process.py [--input /input] [--output /output] [--model DIR]

With /input/inputs.json it runs one Grand-Challenge job; without it, every slide under
/input, one folder each under /output. See README.md.
"""

import sys
from pathlib import Path

try:
    from pathssl.runtime import configure_openmp
except ImportError:  # a clean checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from pathssl.runtime import configure_openmp

configure_openmp()  # before PyTorch loads
from pathssl.grand_challenge.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
