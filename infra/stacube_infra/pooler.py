"""The connection pooler between the functions and PostgreSQL (context ``pooler``).

* ``rds-proxy`` (default): an RDS Proxy for the ``stacube_app`` login. It multiplexes client
  connections onto at most 90 % of the instance's ``max_connections`` at transaction
  boundaries, waits at most 5 s for a database connection, needs no internet access (it works
  in the isolated subnets) and costs $0.015 per vCPU-hour of the instance (2 vCPU minimum,
  about $22 a month).
* ``pgbouncer``: PgBouncer in transaction mode on a ``t4g.nano`` instance, as eoapi-cdk deploys
  it: installed from Ubuntu's packages at boot (so ``nat=true`` is required), credentials from
  the app secret, ``max_db_connections`` the instance's connections less 10 (for the admin and
  the bootstrap). About $3 a month plus the NAT gateway.
* ``none``: the functions connect to the instance itself (a development stage; every warm
  container then holds a session).

Either pooler hands a transaction whatever server connection is free, so the functions run in
``STACUBE_DB_POOL_MODE=transaction`` (no startup options, no server-side prepared statements;
the role's own ``search_path`` and timeouts apply) and connect to ``STACUBE_DATABASE_HOST``
with the app secret's credentials.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacube_infra.config import StageConfig
from stacube_infra.database import DATABASE_NAME, DB_PORT, Database
from stacube_infra.network import Network

#: Seconds the pooler waits for a database connection before the client gets an error.
BORROW_TIMEOUT_S = 5
#: Server connections left for the admin login and the bootstrap.
RESERVED_CONNECTIONS = 10
UBUNTU_AMI = "/aws/service/canonical/ubuntu/server/noble/stable/current/{arch}/hvm/ebs-gp3/ami-id"


def pgbouncer_ini(config: StageConfig, database_host: str) -> str:
    """``pgbouncer.ini`` of the stage (transaction pooling, sized from the instance class)."""
    server = max(config.max_connections - RESERVED_CONNECTIONS, 5)
    return "\n".join([
        "[databases]",
        f"{DATABASE_NAME} = host={database_host} port={DB_PORT} dbname={DATABASE_NAME}",
        "[pgbouncer]",
        "listen_addr = 0.0.0.0",
        f"listen_port = {DB_PORT}",
        "auth_type = scram-sha-256",
        "auth_file = /etc/pgbouncer/userlist.txt",
        "pool_mode = transaction",
        "max_client_conn = 5000",
        f"default_pool_size = {server}",
        f"max_db_connections = {server}",
        f"max_user_connections = {server}",
        "reserve_pool_size = 0",
        f"query_wait_timeout = {BORROW_TIMEOUT_S * 6}",
        "server_tls_sslmode = require",
        "ignore_startup_parameters = extra_float_digits,options,search_path",
        "",
    ])


class Pooler(Construct):
    """The stage's pooler (see the module docstring).

    Attributes:
        host: what the functions connect to (``STACUBE_DATABASE_HOST``).
        port: its port.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        network: Network,
        database: Database,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description=f"{config.prefix} database pooler",
            allow_all_outbound=True,  # the instance, Secrets Manager (and apt for PgBouncer)
        )
        self.security_group.add_ingress_rule(
            network.lambda_security_group, ec2.Port.tcp(DB_PORT), "PostgreSQL from the Lambda functions"
        )
        database.instance.connections.allow_default_port_from(
            self.security_group, "PostgreSQL from the pooler"
        )
        self.port = DB_PORT
        if config.pooler == "rds-proxy":
            self.proxy = rds.DatabaseProxy(
                self,
                "Proxy",
                proxy_target=rds.ProxyTarget.from_instance(database.instance),
                secrets=[database.app_secret],
                vpc=network.vpc,
                vpc_subnets=network.db_subnets,
                security_groups=[self.security_group],
                db_proxy_name=f"{config.prefix}-db",
                require_tls=True,
                iam_auth=False,
                max_connections_percent=90,
                max_idle_connections_percent=10,
                borrow_timeout=Duration.seconds(BORROW_TIMEOUT_S),
                idle_client_timeout=Duration.minutes(15),
            )
            self.host = self.proxy.endpoint
        else:
            self.instance = self._pgbouncer(config, network, database)
            self.host = self.instance.instance_private_ip

    def _pgbouncer(self, config: StageConfig, network: Network, database: Database) -> ec2.Instance:
        arch = "arm64" if config.architecture == "arm64" else "amd64"
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"{config.prefix} PgBouncer: reads the app secret; Systems Manager access",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        database.app_secret.grant_read(role)
        region = Stack.of(self).region
        ini = pgbouncer_ini(config, database.endpoint)
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "set -euo pipefail",
            "export DEBIAN_FRONTEND=noninteractive",
            "apt-get update -q && apt-get install -y -q pgbouncer python3-boto3",
            f"cat > /etc/pgbouncer/pgbouncer.ini <<'INI'\n{ini}INI",
            # the app role's credentials, from the secret the functions read too
            "python3 - <<'PY'\n"
            "import boto3, json\n"
            f"doc = json.loads(boto3.client('secretsmanager', region_name='{region}').get_secret_value("
            f"SecretId='{database.app_secret.secret_arn}')['SecretString'])\n"
            "line = '\"%s\" \"%s\"\\n' % (doc['username'], doc['password'].replace('\"', '\"\"'))\n"
            "open('/etc/pgbouncer/userlist.txt', 'w').write(line)\n"
            "PY",
            "chown postgres:postgres /etc/pgbouncer/userlist.txt && chmod 600 /etc/pgbouncer/userlist.txt",
            "systemctl enable pgbouncer && systemctl restart pgbouncer",
        )
        return ec2.Instance(
            self,
            "PgBouncer",
            vpc=network.vpc,
            vpc_subnets=network.app_subnets,
            instance_type=ec2.InstanceType("t4g.nano" if arch == "arm64" else "t3.nano"),
            machine_image=ec2.MachineImage.from_ssm_parameter(
                UBUNTU_AMI.format(arch=arch), os=ec2.OperatingSystemType.LINUX
            ),
            security_group=self.security_group,
            role=role,
            user_data=user_data,
            user_data_causes_replacement=True,
            require_imdsv2=True,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/sda1",
                    volume=ec2.BlockDeviceVolume.ebs(8, encrypted=True,
                                                     volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )
