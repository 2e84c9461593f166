"""`python -m llmsim` and the `llmsim` command. Until the CLI is loaded, a Ctrl-C exits 130
with one line (llmsim/__init__.py); from here on the CLI handles it (cli_kit.OneLineErrors)."""

import signal

from . import _interrupted_while_loading


def main() -> None:
    from .cli import app

    if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app(prog_name="llmsim")


if __name__ == "__main__":
    main()
