"""``python -m mira.artifacts --markdown``: print the artifact table of docs/architecture.md."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from mira.artifacts import CATALOGUE

    if argv != ["--markdown"]:
        sys.stderr.write("usage: python -m mira.artifacts --markdown\n")
        return 2
    sys.stdout.write(CATALOGUE.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
