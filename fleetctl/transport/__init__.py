"""How fleetctl reaches a host: SSH (Fabric/paramiko) or, for localhost, this machine."""
