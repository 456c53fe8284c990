"""HTTP API (API Gateway v2) routing /stac, /raster and /jobs to their functions."""

from __future__ import annotations

import json

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacube_infra.config import StageConfig

#: Base paths of the three services (also their ``STACUBE_ROOT_PATH``).
STAC_PATH = "/stac"
RASTER_PATH = "/raster"
JOBS_PATH = "/jobs"
JOBS_ROUTES = [JOBS_PATH, f"{JOBS_PATH}/{{proxy+}}"]

#: One JSON line per request in the access log group.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogSettings:
    """Access log destination and line format of an HTTP API stage."""

    def __init__(
        self, destination: apigw.IAccessLogDestination, log_format: apigateway.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        """Where the access log lines go."""
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        """The line format."""
        return self._format


class HttpApi(Construct):
    """One HTTP API with the routes of the STAC, raster and jobs functions.

    Routes: ``ANY /stac`` and ``ANY /stac/{proxy+}`` to the STAC API,
    ``ANY /raster/{proxy+}`` to the raster API, ``ANY /jobs`` and
    ``ANY /jobs/{proxy+}`` to the jobs API. The jobs routes require SigV4-signed
    requests (``jobs_auth=iam``, the default) or a JWT of ``jwt_issuer`` for
    ``jwt_audience`` (``jobs_auth=jwt``); ``none`` leaves them open. The stage
    throttles requests (``api_rate`` / ``api_burst``), the jobs routes harder
    (``jobs_rate`` / ``jobs_burst``). CORS allows any origin, so STAC browsers
    and map viewers can call the API. Requests are logged as JSON lines to a log
    group kept for a month.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        stac: lambda_.IFunction,
        raster: lambda_.IFunction,
        jobs: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigw.HttpApi(
            self,
            "Api",
            api_name=config.prefix,
            description=f"stacube STAC, raster and jobs APIs ({config.stage})",
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=["*"],
                allow_methods=[apigw.CorsHttpMethod.ANY],
                allow_headers=["*"],
            ),
            create_default_stage=False,
        )
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/http-api/{config.prefix}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(
                apigw.LogGroupLogDestination(self.access_logs),
                apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        self._route("Stac", stac, [STAC_PATH, f"{STAC_PATH}/{{proxy+}}"])
        self._route("Raster", raster, [f"{RASTER_PATH}/{{proxy+}}"])
        self._route("Jobs", jobs, JOBS_ROUTES, self._jobs_authorizer(config))
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
            throttling_rate_limit=config.api_rate, throttling_burst_limit=config.api_burst)
        cfn_stage.route_settings = {
            f"ANY {path}": {"ThrottlingRateLimit": config.jobs_rate, "ThrottlingBurstLimit": config.jobs_burst}
            for path in JOBS_ROUTES
        }

    @staticmethod
    def _jobs_authorizer(config: StageConfig) -> apigw.IHttpRouteAuthorizer | None:
        if config.jobs_auth == "iam":
            return authorizers.HttpIamAuthorizer()
        if config.jobs_auth == "jwt":
            return authorizers.HttpJwtAuthorizer(
                "JobsJwt", config.jwt_issuer or "", jwt_audience=list(config.jwt_audience))
        return None

    def _route(
        self,
        name: str,
        function: lambda_.IFunction,
        paths: list[str],
        authorizer: apigw.IHttpRouteAuthorizer | None = None,
    ) -> None:
        """Send ``ANY`` on each of ``paths`` to ``function`` through one integration."""
        integration = integrations.HttpLambdaIntegration(f"{name}Integration", function)
        for path in paths:
            self.api.add_routes(
                path=path,
                methods=[apigw.HttpMethod.ANY],
                integration=integration,
                authorizer=authorizer,
            )

    @property
    def url(self) -> str:
        """Base URL of the API, without a trailing slash."""
        return self.api.api_endpoint
