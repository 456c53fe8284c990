"""AWS Lambda handlers of stacube, one package per function, thin over the library.

``stac_api``, ``raster_api`` and ``jobs_api`` serve HTTP (API Gateway HTTP API, payload 2.0)
through Mangum; ``ingest``, ``planner``, ``worker`` and ``finalize`` consume SQS queues;
``db_bootstrap`` answers a CloudFormation custom resource. :mod:`lambdas.runtime` holds what they
share; :mod:`lambdas.local_events` builds their event shapes to run them outside AWS.
"""
