"""The embedded catalog database: start, status, idempotence, migrations."""

from stacube.db.connection import connect, pgstac_version
from stacube.db.embedded import EmbeddedCluster


def test_cluster_runs_postgis_and_pgstac(database):
    with connect(database) as conn:
        assert pgstac_version(conn).startswith("0.")
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3")


def test_start_and_migrate_are_idempotent(database):
    from stacube.db.migrate import migrate

    cluster = EmbeddedCluster(database)
    assert cluster.start() is False  # already running
    before, after = migrate(database)
    assert before == after


def test_cli_status_reports_contents(cli, samples):
    out = cli("db", "status")
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout and "collections" in out.stdout


def test_cli_status_when_nothing_listens(cli, tmp_path):
    out = cli("db", "status", env={"STACUBE_DATA_DIR": str(tmp_path), "STACUBE_DB_PORT": "1"})
    assert out.returncode != 0
    assert "not created" in out.stdout


def test_unreachable_external_database_is_one_line(cli):
    out = cli("product", "list", env={"STACUBE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot connect to the catalog database" in out.stderr
    assert "Traceback" not in out.stderr
