"""What sidecars, end actors and gateways share above the runtime: queues, names and events."""
