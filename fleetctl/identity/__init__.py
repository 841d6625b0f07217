"""Who may do what: NATS credentials and permissions, tunnel keys and logins."""
