"""``python -m otel_hardening.cli`` is ``otel-hardening``."""

import sys

from otel_hardening.cli import main

sys.exit(main())
