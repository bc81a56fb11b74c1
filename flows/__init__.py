"""Prefect flows that compose the tasks in ``tasks`` into the pipeline and its deployments."""
