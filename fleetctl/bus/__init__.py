"""The fleet's task bus: a client of it (`client`) and its JetStream resources (`jetstream`)."""
