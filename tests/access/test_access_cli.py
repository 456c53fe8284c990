"""The operator's commands: ``stacube workspace``, ``stacube key``, ``stacube product add --workspace``
and ``stacube product share``; errors are one line and a non-zero exit."""

from __future__ import annotations

import json

from stacube_testing import PRODUCTS


def test_workspaces_keys_and_sharing_from_the_command_line(client, world, cli, tmp_path):
    created = cli("workspace", "create", "t-cli", "--title", "CLI workspace")
    assert created.returncode == 0, created.stderr
    again = cli("workspace", "create", "t-cli")
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1 and "exists" in again.stderr
    listed = json.loads(cli("workspace", "list", "--json").stdout)
    assert {"name": "t-cli", "title": "CLI workspace"}.items() <= next(c for c in listed if c["name"] == "t-cli").items()

    key_run = cli("key", "create", "--workspace", "t-cli", "--label", "access-tests")
    assert key_run.returncode == 0, key_run.stderr
    key = key_run.stdout.strip()
    assert key.startswith("stk_") and "shown only now" in key_run.stderr
    keys = json.loads(cli("key", "list", "--workspace", "t-cli", "--json").stdout)
    assert len(keys) == 1 and key not in json.dumps(keys)

    # a product of the workspace, private from the first moment, then shared and made public
    product = tmp_path / "p.json"
    doc = json.loads((PRODUCTS / "landsat-8-l2-worldcereal-sample.json").read_text())
    doc["id"] = "acc-cli-product"
    product.write_text(json.dumps(doc))
    world.extra_collections.add("acc-cli-product")
    add = cli("product", "add", str(product), "--workspace", "t-cli")
    assert add.returncode == 0, add.stderr
    headers = {"X-API-Key": key}
    assert client.get("/stac/collections/acc-cli-product", headers=headers).status_code == 200
    assert client.get("/stac/collections/acc-cli-product").status_code == 404
    assert client.get("/stac/collections/acc-cli-product", headers=world.headers["shared"]).status_code == 404

    shared = cli("product", "share", "acc-cli-product", "--with", "t-beta")
    assert shared.returncode == 0 and "shared with t-beta" in shared.stdout, shared.stdout + shared.stderr
    assert client.get("/stac/collections/acc-cli-product", headers=world.headers["shared"]).status_code == 200
    assert client.get("/stac/collections/acc-cli-product", headers=world.headers["other"]).status_code == 404
    public = cli("product", "share", "acc-cli-product", "--visibility", "public")
    assert public.returncode == 0
    assert client.get("/stac/collections/acc-cli-product").status_code == 200
    shown = cli("product", "share", "acc-cli-product")
    assert "workspace t-cli, public" in shown.stdout

    key_id = keys[0]["id"]
    assert cli("key", "revoke", key_id).returncode == 0
    assert client.get("/stac/collections/acc-cli-product", headers=headers).status_code == 401

    deleted = cli("product", "delete", "acc-cli-product", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    from stacube.access.workspaces import AccessStore

    assert AccessStore(world.settings).get("acc-cli-product") is None


def test_cli_errors_are_one_line(world, cli):
    for args, fragment in [
        (("key", "create"), "needs a workspace"),
        (("key", "create", "--workspace", "t-nobody"), "unknown workspace"),
        (("key", "revoke", "k-none"), "unknown key"),
        (("workspace", "create", "bad name!"), "workspace name"),
        (("product", "share", "acc-private", "--visibility", "secret"), "visibility"),
        (("product", "share", "acc-private", "--with", "t-nobody"), "unknown workspace"),
        (("product", "share", "sentinel-2-l1c-eolearn-sample", "--visibility", "private"), "--workspace"),
        (("product", "share", "acc-nope"), "unknown collection"),
    ]:
        r = cli(*args)
        assert r.returncode != 0, args
        assert len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, (args, r.stderr)
