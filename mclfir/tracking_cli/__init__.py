"""``mclfir tracking start|finish``: the MLflow parent run of one pipeline run, used by `make run`."""
