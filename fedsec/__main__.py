"""``python -m fedsec`` is the ``fedsec`` command."""

from fedsec.cli import main

main()
