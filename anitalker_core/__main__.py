import sys

from .app.cli import main

sys.exit(main(prog="python -m anitalker_core"))
