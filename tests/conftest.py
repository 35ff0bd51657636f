"""Test-session set-up, before anything imports torch: idle OpenMP threads sleep at once.

The suite is thousands of tiny operations, often run beside other work (a background training, a second
CI job), where spinning threads slowed it about 4x (docs/performance.md, "A busy machine"). A user's
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` still wins.
"""

import os

if "GOMP_SPINCOUNT" not in os.environ:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
