"""The embedded local stack: moto as the AWS endpoint, the same code and template as in AWS."""
