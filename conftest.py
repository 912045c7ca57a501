"""Project-wide test configuration: the pytester fixture for the plugin tests."""

import httpx

pytest_plugins = ("pytester",)

# httpx imports httpcore lazily, on its first transport. pytester's in-process runs drop
# the modules first imported during a run; if that was httpcore, the next transport gets a
# fresh httpcore whose exceptions httpx no longer maps, and a refused connection escapes
# as httpcore.ConnectError instead of httpx.ConnectError. Import it all up front.
httpx.HTTPTransport().close()
