"""AWS CDK constructs and stack for deploying stacube.

The package is imported by ``infra/app.py`` (the CDK app entry point) and by the
tests in ``tests/infra``. Every construct reads its settings from a
:class:`~stacube_infra.config.StageConfig`, which is built from CDK context.
"""

from stacube_infra.config import StageConfig
from stacube_infra.stack import StacubeStack, build_app

__all__ = ["StacubeStack", "StageConfig", "build_app"]
