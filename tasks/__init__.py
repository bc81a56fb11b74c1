"""Prefect tasks: thin wrappers over ``mclfir`` functions, with retries on I/O only."""
