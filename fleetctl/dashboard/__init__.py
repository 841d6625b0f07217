"""`fleetctl dashboard`: the fleet's tasks, results, status and costs in a browser, and the
place people judge the workers' answers (docs/dashboard.md)."""
