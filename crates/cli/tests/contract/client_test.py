"""Drive Coffer through a client generated from its OpenAPI document alone
(openapi-python-client): list disks, create one, page through 250.

Usage: client_test.py PACKAGE_DIR BASE_URL TOKEN ZONE
"""
import sys

sys.path.insert(0, sys.argv[1])
base_url, token, zone = sys.argv[2], sys.argv[3], sys.argv[4]

from coffer_api_client import AuthenticatedClient  # noqa: E402
from coffer_api_client.api.disks import create_disk, list_disks  # noqa: E402
from coffer_api_client.models import CreateDisk, Disk, PageDisk  # noqa: E402

client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

first = list_disks.sync(client=client)
assert isinstance(first, PageDisk), first
before = len(first.items)

made = create_disk.sync(client=client, body=CreateDisk(name="generated-0", zone=zone, size="1MiB"))
assert isinstance(made, Disk), made
assert made.name == "generated-0" and made.size_bytes == 1 << 20, made

for i in range(1, 250):
    d = create_disk.sync(client=client, body=CreateDisk(name=f"generated-{i}", zone=zone, size="1MiB"))
    assert isinstance(d, Disk), d

seen, pages, token_next = [], 0, None
while True:
    page = list_disks.sync(client=client, limit=40, next_=token_next) if token_next else list_disks.sync(client=client, limit=40)
    assert isinstance(page, PageDisk), page
    pages += 1
    assert len(page.items) <= 40
    seen.extend(d.id for d in page.items)
    if not page.next_:
        break
    token_next = page.next_
assert len(seen) == len(set(seen)), "a page repeated a disk"
generated = [i for i in seen if i]
assert len(generated) == before + 250, (len(generated), before)
assert pages == -(-(before + 250) // 40), pages
print(f"ok: {len(seen)} disks in {pages} pages")
