"""The `memguard` command's entry point (also `python -m memguard`).

It imports the CLI only when run, so that an install without memguard[cli] answers with one line
that names the extra (exit 1) instead of a traceback.
"""

from __future__ import annotations

import sys

from memguard._extras import MissingExtra


def main() -> None:
    """Run the command line, or say which extra it needs."""
    try:
        from memguard.cli import main as cli_main
    except MissingExtra as missing:
        print(f"memguard: {missing}", file=sys.stderr)
        raise SystemExit(1) from None
    cli_main()


if __name__ == "__main__":
    main()
