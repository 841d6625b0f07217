"""desired vs observed -> Plan: a pure, JSON-ready list of changes per host, and the bus's.

`types` holds what a plan is; `hosts` and `bus` diff one host and the bus; `fleet.make_plan`
diffs every planned host and the bus; `selection` is what --host and --worker narrow it to.
The offline plan (`--dry-run`) diffs against hosts about which nothing is known, so it lists
everything the fleet would put on each host and the bus; the live plan diffs against what
was observed.
"""
