"""The kinds of resource fleetctl reconciles: one module per kind, each kind one class."""
