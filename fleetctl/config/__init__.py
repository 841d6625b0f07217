"""Loading and validating fleet.yaml and servers.yaml."""

from fleetctl.config.errors import ConfigError, Mark, Problem
from fleetctl.config.loader import load_fleet

__all__ = ["ConfigError", "Mark", "Problem", "load_fleet"]
