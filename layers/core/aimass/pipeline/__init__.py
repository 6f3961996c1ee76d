"""Retraining: the steps of statemachines/training_pipeline.asl.json.

Ingest (a snapshot of `datasets/<model>/`, hashed) -> Validate (schema, completeness, drift against
the serving version's baseline; and where to train) -> Train (scikit-learn, exported to ONNX and
checked against the estimator; for heavy training the same trainer runs in a SageMaker training
job: aimass.pipeline.sagemaker, aimass.pipeline.job) -> Evaluate (candidate and champion on the
same held-out rows) -> the release gate (a Choice in the definition) -> Register (metrics,
baseline, lineage) -> Release (the alias the policy names) -> Notify. docs/pipeline.md describes
them; aimass.pipeline.steps runs them.
"""
