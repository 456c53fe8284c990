"""Install or upgrade the catalog's schemas: pgSTAC with pypgstac's migrations, then the tables
of stacube's own packages.

A package registers its tables as an entry point of the group ``stacube.tables`` naming a
string of idempotent SQL (``CREATE TABLE IF NOT EXISTS ...`` and the upgrades of older layouts);
:func:`migrate` runs every registered one, in name order, so this module imports none of them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from pypgstac.db import PgstacDB
from pypgstac.migrate import Migrate

from stacube.db.connection import connect, pgstac_version, redact
from stacube.errors import DatabaseUnavailable
from stacube.settings import Settings


def migrate(settings: Settings) -> tuple[str | None, str]:
    """Bring the database to the pgSTAC version pypgstac ships.

    Idempotent: a database already at that version is left alone. PostGIS is created by the
    migration (it needs a role allowed to ``CREATE EXTENSION``). Also creates the tables of
    stacube's packages (:func:`registered_tables`).

    Returns:
        ``(version before, version after)``; ``before`` is None on a fresh database.
    """
    with connect(settings) as conn:
        before = pgstac_version(conn)
    db = PgstacDB(dsn=settings.dsn())
    try:
        after = Migrate(db).run_migration()
    except Exception as exc:  # pypgstac raises bare Exceptions
        raise DatabaseUnavailable(
            f"pgSTAC migration failed on {redact(settings.dsn())}: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        db.close()
    with connect(settings, autocommit=True) as conn:
        for _, sql in registered_tables():
            conn.execute(sql)
        # Keep collection extents in step with their items as they are loaded; answer searches
        # with numberMatched: counted, or estimated from the query plan past 100,000 rows.
        conn.execute(
            "INSERT INTO pgstac.pgstac_settings (name, value) VALUES "
            "('update_collection_extent', 'true'), ('context', 'auto') "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        )
        for sql in CATALOG_TRIGGERS:
            conn.execute(sql)
    return before, after


def registered_tables() -> list[tuple[str, str]]:
    """``(name, SQL)`` of every entry point of the group ``stacube.tables``, by name."""
    found = sorted(entry_points(group="stacube.tables"), key=lambda e: e.name)
    return [(e.name, e.load()) for e in found]


# pgSTAC sets a collection's extent to null when its last item is deleted (update_collection_extent
# computes it from the items); STAC requires an extent: keep the last one, or the open extent.
COLLECTION_EXTENT_GUARD = """
CREATE OR REPLACE FUNCTION stacube.collection_extent_not_null() RETURNS trigger AS $$
BEGIN
    IF jsonb_typeof(NEW.content -> 'extent') IS DISTINCT FROM 'object' THEN
        NEW.content := jsonb_set(NEW.content, '{extent}', CASE
            WHEN TG_OP = 'UPDATE' AND jsonb_typeof(OLD.content -> 'extent') = 'object'
                THEN OLD.content -> 'extent'
            ELSE '{"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [[null, null]]}}'::jsonb
        END, true);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS stacube_collection_extent ON pgstac.collections;
CREATE TRIGGER stacube_collection_extent BEFORE INSERT OR UPDATE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION stacube.collection_extent_not_null();
"""


# The version of each collection's content (its document and its items): a new value of one
# sequence whenever either changes, once per transaction and collection (a row trigger on the
# items' partitions and on the collections, remembering in a transaction-local setting the
# collections it has already marked; as the migrating role, since pgSTAC's loader writes as
# pgstac_ingest). Caches of rendered tiles key on it (stacube_services.tile_cache).
CATALOG_CHANGES = """
CREATE SCHEMA IF NOT EXISTS stacube;
CREATE SEQUENCE IF NOT EXISTS stacube.catalog_change_seq;
CREATE TABLE IF NOT EXISTS stacube.catalog_changes (
    collection text PRIMARY KEY,
    version bigint NOT NULL
);
CREATE OR REPLACE FUNCTION stacube.note_catalog_change() RETURNS trigger AS $$
DECLARE
    cid text;
    seen text := coalesce(current_setting('stacube.changed_collections', true), '');
    mark text;
BEGIN
    IF TG_TABLE_NAME = 'collections' THEN
        cid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    ELSE
        cid := CASE WHEN TG_OP = 'DELETE' THEN OLD.collection ELSE NEW.collection END;
    END IF;
    mark := chr(31) || cid || chr(31);
    IF position(mark IN seen) > 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO stacube.catalog_changes (collection, version)
        VALUES (cid, nextval('stacube.catalog_change_seq'))
        ON CONFLICT (collection) DO UPDATE SET version = EXCLUDED.version;
    PERFORM set_config('stacube.changed_collections', seen || mark, true);
    RETURN NULL;
END
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
DROP TRIGGER IF EXISTS stacube_catalog_change ON pgstac.items;
CREATE TRIGGER stacube_catalog_change AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
    FOR EACH ROW EXECUTE FUNCTION stacube.note_catalog_change();
DROP TRIGGER IF EXISTS stacube_catalog_change ON pgstac.collections;
CREATE TRIGGER stacube_catalog_change AFTER INSERT OR UPDATE OR DELETE ON pgstac.collections
    FOR EACH ROW EXECUTE FUNCTION stacube.note_catalog_change();
"""

#: stacube's triggers on pgSTAC's tables, in order (run by :func:`migrate` and by the
#: ``db-bootstrap`` function of the AWS deployment)
CATALOG_TRIGGERS = (COLLECTION_EXTENT_GUARD, CATALOG_CHANGES)
