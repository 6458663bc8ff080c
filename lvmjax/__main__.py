import sys

from lvmjax.cli import main

sys.exit(main())
