"""``python -m lasr.render run=OUTPUT_DIR [...]``: overlay, views and turntable videos of a
finished fit (see :mod:`lasr.renders`)."""

import sys

from lasr.renders import main

if __name__ == "__main__":
    sys.exit(main())
