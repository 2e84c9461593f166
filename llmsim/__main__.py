"""`python -m llmsim`: the same as the `llmsim` command."""

from .cli import app

app(prog_name="llmsim")
