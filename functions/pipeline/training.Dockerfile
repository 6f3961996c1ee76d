# The retraining pipeline's SageMaker training image (docs/pipeline.md, "Heavy training on
# SageMaker"): aimass.pipeline.job, the same trainer as the pipeline function's Train step, run as
# SageMaker runs a training container (`docker run IMAGE train`, data under /opt/ml).
#
# Not built by `sam build`: DevOps builds it from the repository root and pushes it to ECR, then
# deploys with its URI as the TrainingImageUri parameter (docs/deploy.md):
#   docker build -f functions/pipeline/training.Dockerfile -t "$REPOSITORY_URI:$TAG" .
#   docker push "$REPOSITORY_URI:$TAG"
# Nothing in the tests or the local stack needs Docker: they run the module itself.
FROM public.ecr.aws/docker/library/python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

COPY pyproject.toml README.md /opt/aimass-src/
COPY layers/core /opt/aimass-src/layers/core
RUN pip install --no-cache-dir "/opt/aimass-src[train,parquet]" && rm -rf /opt/aimass-src

# SageMaker starts the container with the argument `train`.
ENTRYPOINT ["python", "-m", "aimass.pipeline.job"]
