import sys

from model_boss.cli import main

sys.exit(main())
