"""Custom resource that prepares the database: pgSTAC schema and the app role."""

from __future__ import annotations

from aws_cdk import CustomResource
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacube_infra.database import DATABASE_NAME, Database
from stacube_infra.functions import FunctionFactory, FunctionSpec
from stacube_infra.network import Network

#: pgSTAC version installed by the bootstrap; changing it re-runs the migrations.
PGSTAC_VERSION = "0.10.0"
#: CloudFormation type of the bootstrap resource.
RESOURCE_TYPE = "Custom::StacubeDbBootstrap"
#: The app role's limits: a statement ends before the API functions' 30 s timeout, a transaction
#: left open by a frozen or killed function ends after a minute (and frees its connection).
STATEMENT_TIMEOUT = "25s"
IDLE_IN_TRANSACTION_TIMEOUT = "60s"

BOOTSTRAP_SPEC = FunctionSpec(
    name="db-bootstrap",
    memory_mb=512,
    timeout_s=300,
    description="Installs or migrates pgSTAC and creates the stacube_app role",
)


class DbBootstrap(Construct):
    """The ``db-bootstrap`` function and the custom resource that invokes it.

    CloudFormation invokes the function directly (the service token is its ARN)
    on create, on update (any property change, e.g. ``PgstacVersion``) and on
    delete; the handler PUTs its answer to the event's ``ResponseURL``, which the
    function reaches through the S3 gateway endpoint. The function reads both
    database secrets: the admin one to connect, the app one to set the role's
    password. The resource waits for the database and the network endpoints.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        factory: FunctionFactory,
        database: Database,
        network: Network,
        pgstac_version: str = PGSTAC_VERSION,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function: lambda_.Function = factory.zip_function(
            self, "Function", BOOTSTRAP_SPEC, "db_bootstrap"
        )
        database.admin_secret.grant_read(self.function)
        database.app_secret.grant_read(self.function)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={
                "AdminSecretArn": database.admin_secret.secret_arn,
                "AppSecretArn": database.app_secret.secret_arn,
                "DatabaseName": DATABASE_NAME,
                "PgstacVersion": pgstac_version,
                "StatementTimeout": STATEMENT_TIMEOUT,
                "IdleInTransactionTimeout": IDLE_IN_TRANSACTION_TIMEOUT,
            },
        )
        # The instance must be up, and the endpoints the function uses in place.
        self.resource.node.add_dependency(database)
        self.resource.node.add_dependency(network)
