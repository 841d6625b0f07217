"""What fleetctl ships to hosts: the poller's wheels, LLM CLIs, nats-server."""
