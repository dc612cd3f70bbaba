"""Commands of the ``fedsec`` command line that read run directories (typer functions, registered
in :mod:`fedsec.cli`)."""
