"""What the running fleet is doing: `fleetctl status` and `fleetctl logs`."""
