"""``mclfir tracking start|finish``: the MLflow parent run of one pipeline run, for `make run` and flows."""
