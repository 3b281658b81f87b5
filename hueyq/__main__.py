"""``python -m hueyq`` runs the command line."""

from hueyq.cli import main

main()
