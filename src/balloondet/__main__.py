"""`python -m balloondet` (also what torchrun launches: `torchrun ... -m balloondet train ...`)."""
import sys

from .cli import main

sys.exit(main())
