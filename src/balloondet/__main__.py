"""`python -m balloondet` (also what torchrun launches: `torchrun ... -m balloondet train ...`)."""
import sys

from balloondet.cli import main

sys.exit(main())
