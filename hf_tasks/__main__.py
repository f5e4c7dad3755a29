import sys

from hf_tasks.cli import main

sys.exit(main())
