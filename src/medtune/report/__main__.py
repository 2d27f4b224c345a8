"""`python -m medtune.report ...`: the command line lives in medtune.report.command."""

from medtune.report.command import main

main()
