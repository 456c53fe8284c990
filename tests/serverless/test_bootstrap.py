"""db-bootstrap: CloudFormation Create / Update / Delete against the session's PostgreSQL."""

import psycopg

from serverless_support import APP_USER, DATABASE, bootstrap_properties, load_handler
from lambdas.local_events import cfn_event


def admin_conn(aws, dbname=DATABASE):
    return psycopg.connect(f"postgresql://postgres@127.0.0.1:{aws.db_port}/{dbname}", autocommit=True)


def test_create_installs_pgstac_and_the_app_role(aws, bootstrapped):
    answer = bootstrapped["response"]
    event = bootstrapped["event"]
    body = answer["body"]
    assert answer["path"].startswith("/cloudformation/response")
    assert answer["headers"].get("Content-Type") == ""  # the pre-signed URL is signed without one
    assert body["Status"] == "SUCCESS"
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == (
        event["StackId"], event["RequestId"], event["LogicalResourceId"])
    assert body["Data"] == {"PgstacVersion": "0.10.0", "Database": DATABASE, "AppUser": APP_USER}
    with admin_conn(aws) as conn:
        assert conn.execute("SELECT pgstac.get_version()").fetchone()[0] == "0.10.0"
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
        roles = {r[0] for r in conn.execute(
            "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.member "
            "JOIN pg_roles b ON b.oid = m.roleid WHERE a.rolname = %s", (APP_USER,))}
        assert {"pgstac_read", "pgstac_ingest", "pgstac_admin"} <= roles
        assert conn.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s",
                            (APP_USER,)).fetchone() == (True, False)
        assert conn.execute("SELECT value FROM pgstac.pgstac_settings WHERE name = "
                            "'update_collection_extent'").fetchone()[0] == "true"
    # The app role (not a superuser) can use the catalog and the job tables.
    with psycopg.connect(f"postgresql://{APP_USER}@127.0.0.1:{aws.db_port}/{DATABASE}",
                         autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM stacube.jobs").fetchone()[0] >= 0
        assert conn.execute("SHOW search_path").fetchone()[0].startswith("pgstac")
        # the role's own limits: a runaway statement or a transaction left open ends by itself
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "25s"
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"


def test_update_runs_again_and_delete_leaves_the_database(aws, bootstrapped, cfn_responses):
    handler = load_handler("db_bootstrap")
    physical = bootstrapped["response"]["body"]["PhysicalResourceId"]
    props = bootstrap_properties(aws)
    before = len(cfn_responses.answers)
    update = handler(cfn_event("Update", cfn_responses.url, props, physical_id=physical,
                               old_properties={**props, "PgstacVersion": "0.9.8"}), None)
    assert update["Status"] == "SUCCESS", update["Reason"]
    assert update["PhysicalResourceId"] == physical  # same resource: no replacement
    delete = handler(cfn_event("Delete", cfn_responses.url, props, physical_id=physical), None)
    assert delete["Status"] == "SUCCESS"
    assert [a["body"]["Status"] for a in cfn_responses.answers[before:]] == ["SUCCESS", "SUCCESS"]
    with admin_conn(aws, "postgres") as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()


def test_a_failure_is_reported_to_cloudformation(aws, bootstrapped, cfn_responses):
    handler = load_handler("db_bootstrap")
    props = bootstrap_properties(aws, AppSecretArn="arn:aws:secretsmanager:us-east-1:123456789012:"
                                                   "secret:does-not-exist")
    body = handler(cfn_event("Create", cfn_responses.url, props), None)  # returns, never raises
    assert body["Status"] == "FAILED"
    assert "ResourceNotFoundException" in body["Reason"]
    assert cfn_responses.answers[-1]["body"]["Status"] == "FAILED"
    missing = handler(cfn_event("Create", cfn_responses.url, {"DatabaseName": DATABASE}), None)
    assert missing["Status"] == "FAILED" and "AdminSecretArn" in missing["Reason"]
