"""`python -m medtune.export ...`: the command line lives in medtune.export.command."""

from medtune.export.command import main

main()
