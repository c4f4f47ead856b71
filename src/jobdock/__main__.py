"""``python -m jobdock``: the same as the ``jobdock`` command."""

from jobdock.cli import main

main()
