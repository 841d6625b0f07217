"""Send one task to several workers and print what each answered (fleetctl.client).

    python examples/fan_out.py fleet.yaml w1 w2 w3

The bus is reached as the CLI reaches it: FLEETCTL_NATS_URL / FLEETCTL_NATS_CREDS if set,
else the local fleet if one is running, else an SSH forward to the broker.
"""

import sys

from fleetctl.client import Client


def main(fleet_yaml: str, *workers: str) -> int:
    with Client.open(fleet_yaml) as fleet:
        sent = fleet.send("Name one sorting algorithm.", to=workers, task_type="quiz")
        results = fleet.wait(sent, timeout=600)
    for result in results:
        print(f"{result.worker_id}: {result.status}: {result.output.strip()}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
