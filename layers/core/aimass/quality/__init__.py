"""Data quality: the columns a model takes, baselines from reference data, request-time checks,
anomaly scores and drift reports. numpy and the standard library only: this runs in the Lambda."""
