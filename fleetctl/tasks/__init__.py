"""Tasks on the bus: addressing, messages, the Python client, the cost ledger."""
