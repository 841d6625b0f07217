"""`python -m poller` / `fleet-poller`."""

from __future__ import annotations

import sys


def main() -> int:
    print("fleet-poller: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
