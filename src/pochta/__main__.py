"""``python -m pochta`` is the ``pochta`` command."""

from pochta.cli import main

main()
