"""VPC, subnets, endpoints and the security group shared by the functions."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacube_infra.config import StageConfig

#: Subnet group of the Lambda functions and the interface endpoints.
APP_SUBNETS = "app"
#: Subnet group of the database (always isolated).
DB_SUBNETS = "db"


class Network(Construct):
    """A two-AZ VPC for the database and the functions that talk to it.

    Without NAT (the default) the ``app`` subnets are isolated: the functions reach
    S3 through a gateway endpoint (free) and Secrets Manager and SQS through
    interface endpoints. With ``nat=true`` one NAT gateway in a public subnet gives
    them the internet (e.g. to read scenes from another region) and the interface
    endpoints are left out, since the NAT carries that traffic.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        app_subnet_type = (
            ec2.SubnetType.PRIVATE_WITH_EGRESS if config.nat else ec2.SubnetType.PRIVATE_ISOLATED
        )
        subnets = [
            ec2.SubnetConfiguration(name=APP_SUBNETS, subnet_type=app_subnet_type, cidr_mask=20),
            ec2.SubnetConfiguration(
                name=DB_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
            ),
        ]
        if config.nat:
            subnets.insert(
                0,
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
            max_azs=2,
            nat_gateways=1 if config.nat else 0,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
        )
        self.app_subnets = ec2.SubnetSelection(subnet_group_name=APP_SUBNETS)
        self.db_subnets = ec2.SubnetSelection(subnet_group_name=DB_SUBNETS)

        self.lambda_security_group = ec2.SecurityGroup(
            self,
            "LambdaSecurityGroup",
            vpc=self.vpc,
            description=f"{config.prefix} Lambda functions",
            allow_all_outbound=True,
        )

        self.vpc.add_gateway_endpoint(
            "S3Endpoint",
            service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[self.app_subnets],
        )
        if not config.nat:
            self._add_interface_endpoints(config)

    def add_container_endpoints(self, config: StageConfig) -> None:
        """ECR and CloudWatch Logs endpoints: what a Fargate task in the isolated subnets needs to
        pull its image and ship its log (Lambda needs neither); nothing with NAT."""
        if config.nat:
            return
        services = {
            "EcrApiEndpoint": ec2.InterfaceVpcEndpointAwsService.ECR,
            "EcrDockerEndpoint": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
            "LogsEndpoint": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
        }
        for endpoint_id, service in services.items():
            self.vpc.add_interface_endpoint(
                endpoint_id, service=service, subnets=self.app_subnets,
                security_groups=[self.endpoint_security_group], private_dns_enabled=True, open=False,
            )

    def _add_interface_endpoints(self, config: StageConfig) -> None:
        """Secrets Manager and SQS endpoints, reachable on 443 from the functions only."""
        self.endpoint_security_group = endpoint_sg = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description=f"{config.prefix} VPC interface endpoints",
            allow_all_outbound=False,
        )
        endpoint_sg.add_ingress_rule(
            self.lambda_security_group, ec2.Port.tcp(443), "HTTPS from the Lambda functions"
        )
        services = {
            "SecretsManagerEndpoint": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            "SqsEndpoint": ec2.InterfaceVpcEndpointAwsService.SQS,
        }
        for endpoint_id, service in services.items():
            self.vpc.add_interface_endpoint(
                endpoint_id,
                service=service,
                subnets=self.app_subnets,
                security_groups=[endpoint_sg],
                private_dns_enabled=True,
                open=False,
            )
