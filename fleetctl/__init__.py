"""fleetctl: provision and run a fleet of LLM coding agents with NATS JetStream as the task bus."""

__version__ = "0.1.0"
