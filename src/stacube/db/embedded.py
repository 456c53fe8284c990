"""An embedded PostgreSQL + PostGIS cluster in a local data directory.

``stacube db start`` creates the cluster on first use (``initdb``), starts it on loopback,
creates the database and installs pgSTAC. PostgreSQL refuses to run as root: when stacube is
invoked as root the server runs as a service user (``postgres`` by default), which must own the
data directory and be able to reach it. If the default directory sits below a folder that user
cannot traverse (a home directory with mode 0700, say), the cluster lives in
``/var/lib/stacube/<hash>`` instead and ``.stacube/pg`` is a symbolic link to it.

The cluster listens on 127.0.0.1 only, with ``trust`` authentication for local connections: it
is a single-user development catalog. Point ``STACUBE_DATABASE_URL`` at a managed PostgreSQL for
anything shared.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from stacube.errors import StacubeError
from stacube.settings import Settings

POSTGIS_CONTROL = "postgis.control"


@dataclass(frozen=True)
class ClusterStatus:
    """What ``stacube db status`` reports."""

    directory: Path
    initialised: bool
    running: bool
    port: int
    pid: int | None


def find_bindir() -> Path:
    """The newest PostgreSQL server binary directory that has PostGIS next to it.

    Raises:
        StacubeError: no PostgreSQL server (``initdb``) is installed.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for bindir in candidates:
        version = Path(bindir).parent.name
        if Path(f"/usr/share/postgresql/{version}/extension/{POSTGIS_CONTROL}").exists():
            return Path(bindir)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    if candidates:
        return Path(candidates[0])
    raise StacubeError(
        "no PostgreSQL server found: install postgresql-15 and postgresql-15-postgis-3 "
        "(`make install` does) or set STACUBE_DATABASE_URL"
    )


class EmbeddedCluster:
    """A PostgreSQL cluster owned by stacube, in ``settings.pg_dir``.

    Args:
        settings: where the cluster lives (``data_dir``), its port and database name, and the
            service user used when running as root.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = settings.db_port
        self.link = settings.pg_dir
        self._bindir: Path | None = None

    # -- locations and users -------------------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def service_user(self) -> pwd.struct_passwd | None:
        """The account that runs the server: None means the current user."""
        if not self.as_root:
            return None
        try:
            return pwd.getpwnam(self.settings.db_service_user)
        except KeyError as exc:
            raise StacubeError(
                f"running as root, but service user {self.settings.db_service_user!r} does not "
                "exist: install PostgreSQL from apt (it creates `postgres`) or set "
                "STACUBE_DB_SERVICE_USER"
            ) from exc

    @property
    def directory(self) -> Path:
        """The real data directory (the link target when ``.stacube/pg`` is a link)."""
        return self.link.resolve() if self.link.is_symlink() else self.link

    def _traversable_by_others(self, path: Path) -> bool:
        user = self.service_user
        for parent in [path, *path.parents]:
            if not parent.exists():
                continue
            st = parent.stat()
            if user is not None and st.st_uid == user.pw_uid:
                continue
            if not st.st_mode & 0o001:
                return False
        return True

    def _prepare_directory(self) -> Path:
        if self.link.is_symlink() or (self.link / "PG_VERSION").exists():
            return self.directory
        self.link.parent.mkdir(parents=True, exist_ok=True)
        target = self.link
        if self.as_root and not self._traversable_by_others(self.link.parent):
            digest = hashlib.sha1(str(self.link).encode()).hexdigest()[:12]
            target = Path("/var/lib/stacube") / digest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            self.link.symlink_to(target)
        target.mkdir(parents=True, exist_ok=True)
        user = self.service_user
        if user is not None:
            os.chown(target, user.pw_uid, user.pw_gid)
        os.chmod(target, 0o700)
        return target

    # -- process control -------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        user = self.service_user
        kwargs = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if user is not None:
            env["HOME"] = user.pw_dir
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd="/", **kwargs  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise StacubeError(f"{Path(args[0]).name} failed: {detail[-1] if detail else proc.returncode}")
        return proc

    def status(self) -> ClusterStatus:
        directory = self.directory
        initialised = (directory / "PG_VERSION").exists()
        pid = None
        running = False
        if initialised:
            proc = self._run(str(self.bindir / "pg_ctl"), "status", "-D", str(directory), check=False)
            running = proc.returncode == 0
            pidfile = directory / "postmaster.pid"
            if running and pidfile.exists():
                pid = int(pidfile.read_text().split()[0])
        return ClusterStatus(directory, initialised, running, self.port, pid)

    def initdb(self) -> bool:
        """Create the cluster if it does not exist; True when it was created."""
        directory = self._prepare_directory()
        if (directory / "PG_VERSION").exists():
            return False
        self._run(
            str(self.bindir / "initdb"), "-D", str(directory), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8",
        )
        with open(directory / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# stacube embedded catalog\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = on\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "work_mem = 32MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_locks_per_transaction = 1024\n"
                "log_min_messages = warning\n"
            )
        return True

    def start(self, timeout: float = 30.0) -> bool:
        """Start the server (creating the cluster first if needed); True when it was started."""
        self.initdb()
        if self.status().running:
            return False
        directory = self.directory
        log = directory / "server.log"
        self._run(
            str(self.bindir / "pg_ctl"), "start", "-D", str(directory), "-l", str(log),
            "-o", f"-p {self.port}", "-w", "-t", str(int(timeout)), check=False,
        )
        if not self._wait_ready(timeout):
            tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
            raise StacubeError(
                f"PostgreSQL did not start on port {self.port}: {' | '.join(tail) or 'no log'}"
            )
        self.ensure_database()
        return True

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self._admin_dsn(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.2)
        return False

    def stop(self) -> bool:
        """Stop the server; True when it was running."""
        if not self.status().running:
            return False
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.directory), "-m", "fast", "-w")
        return True

    def _admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ensure_database(self) -> bool:
        """Create the catalog database if it is missing; True when it was created."""
        name = self.settings.db_name
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
