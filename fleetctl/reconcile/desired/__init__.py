"""Fleet -> what each host should have (users, directories, packages, files, units) and what
the bus should hold (streams, consumers, credentials to revoke).

A pure function of the validated fleet and its gathered inputs (`fleetctl.reconcile.inputs`):
no I/O beyond reading templates, so it is fast, deterministic and tested byte for byte against
golden files. `build.desired_state` is the entry; a module per role adds its resources.
"""
