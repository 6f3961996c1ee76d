"""Deploying a registered version to a SageMaker real-time endpoint that runs gpu_endpoints/: the tool
behind `aimass gpu` (docs/gpu.md, "Deploying a version to an endpoint"). Not in the Lambda layer: no
function deploys.

One deployment, in order, and nothing touched until every check has passed:
1. checks (`request`, `endpoint.plan`): the version runs on SageMaker, the endpoint is the version's
   own (unless forced), the options are within what SageMaker takes, an existing endpoint is
   InService with the one variant `primary`, the rollback alarms exist, the image and role are known;
2. the package (`package`): the version's ONNX bytes (checked against their registered sha256) and a
   `config.json` for the server, as `model.tar.gz` with the single-model layout at its root, under
   `models/<name>/<version>/sagemaker/`;
3. a SageMaker Model and an EndpointConfig (variant `primary`, data capture to `capture/_endpoints/`),
   named after the endpoint, model and version with a short unique suffix;
4. CreateEndpoint for a new endpoint; otherwise UpdateEndpoint, a blue/green deployment with
   SageMaker's guardrails: canary or linear traffic shifting, baking between steps, and automatic
   rollback when one of the given CloudWatch alarms fires;
5. a bounded wait for InService (or for the rollback), with progress reports;
6. autoscaling (`autoscaling`): the variant registered as a scalable target with a target-tracking
   policy on SageMakerVariantInvocationsPerInstance.
Steps 3 to 5 are `endpoint.deploy`; `status` reads back what an endpoint runs.

Autoscaling and updates (AWS, "Update endpoints that use auto scaling"): UpdateEndpoint fails when it
would change the instance type of a variant registered for autoscaling; changing only the model is
allowed. So the registration stays in place for a new model on the same instance type, and is taken
off (policies deleted, target deregistered) before an update that changes the instance type, then put
back once the endpoint is InService again, whether the new fleet stayed or was rolled back.

Clients come from aimass.aws; the boto3 calls are written here rather than through the `sagemaker`
SDK, whose update path cannot send a DeploymentConfig and which has no autoscaling calls (docs/gpu.md
has the measurements).
"""
