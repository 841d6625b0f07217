"""The worker runtime: pull a task from JetStream, run the LLM CLI, publish the result."""

__version__ = "0.1.0"
