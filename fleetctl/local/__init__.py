"""`fleetctl up`: the whole fleet on this machine (a local broker, one poller per worker)."""
