"""Loading and validating fleet.yaml and servers.yaml (see loader.load_fleet)."""
