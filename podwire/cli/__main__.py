"""``python -m podwire.cli``."""

from podwire.cli import main

main()
