"""`python -m llmsim` and the `llmsim` command.

Importing the CLI (numpy, pyarrow, scipy, rich) takes a moment. A Ctrl-C then would surface
as whatever import it broke (numpy reports it as a failed C-extension import, with a page
of advice): until the CLI is loaded, it exits 130 with one line. The CLI then handles
Ctrl-C itself (cli_kit.OneLineErrors)."""

import os
import signal


def _interrupted_while_loading(signum, frame):
    os.write(2, b"interrupted\n")
    os._exit(130)  # nothing written yet: nothing to clean up


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    from .cli import app

    signal.signal(signal.SIGINT, signal.default_int_handler)
    app(prog_name="llmsim")


if __name__ == "__main__":
    main()
