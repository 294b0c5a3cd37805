"""Ways to run gateways as replicas on a cluster. Each module imports its framework itself,
so that nothing else in polyroute (the gateway least of all) depends on it."""
