"""``python -m deniable`` runs the CLI."""

from deniable.cli import main

main()
