"""The Docker SDK for Python (docker-py, from PyPI) against bosun's engine.

Run by tests/docker_py.rs with DOCKER_HOST pointing at a test engine and
BOSUN_TEST_PORT a free host port. Every check raises on failure; the last
line printed is "ok".
"""
import os
import socket
import time
import urllib.request

import docker

client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto")
assert client.ping() is True
version = client.version()
assert float(version["ApiVersion"]) >= 1.44, version

# Images.
image = client.images.get("busybox")
assert any(t.endswith("busybox:latest") for t in image.tags), image.tags
assert any(i.id == image.id for i in client.images.list())

# A foreground run returns its output; a failing one raises with the code.
out = client.containers.run("busybox", ["echo", "hello sdk"], remove=True)
assert out == b"hello sdk\n", out
try:
    client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    raise AssertionError("a failing container must raise")
except docker.errors.ContainerError as e:
    assert e.exit_status == 3, e.exit_status

# Detached, published, logs, exec, stop, remove.
port = int(os.environ["BOSUN_TEST_PORT"])
web = client.containers.run(
    "busybox", ["httpd", "-f", "-vv", "-p", "80", "-h", "/var/www"],
    detach=True, name="sdk-web", ports={"80/tcp": port},
)
web.reload()
assert web.status == "running", web.status
body = None
for _ in range(100):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
        break
    except OSError:
        time.sleep(0.1)
assert body == b"hello-from-bosun\n", body
code, output = web.exec_run(["cat", "/var/www/index.html"])
assert code == 0 and output == b"hello-from-bosun\n", (code, output)
code, _ = web.exec_run(["sh", "-c", "exit 9"])
assert code == 9, code
logs = web.logs()
assert b"url:/" in logs, logs
assert [c.name for c in client.containers.list(filters={"name": "sdk-web"})] == ["sdk-web"]
web.stop(timeout=1)
web.reload()
assert web.status == "exited", web.status
assert web.wait()["StatusCode"] == 137
web.remove()
try:
    client.containers.get("sdk-web")
    raise AssertionError("removed container still found")
except docker.errors.NotFound:
    pass

# Volumes.
vol = client.volumes.create("sdk-data")
client.containers.run("busybox", ["sh", "-c", "echo kept > /d/f"], volumes={"sdk-data": {"bind": "/d", "mode": "rw"}}, remove=True)
out = client.containers.run("busybox", ["cat", "/d/f"], volumes={"sdk-data": {"bind": "/d", "mode": "ro"}}, remove=True)
assert out == b"kept\n", out
assert "sdk-data" in [v.name for v in client.volumes.list()]
vol.remove()

# A user-defined network with name resolution.
subnet = os.environ["BOSUN_TEST_SUBNET"]
net = client.networks.create(
    "sdk-net", driver="bridge",
    ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]),
)
server = client.containers.run("busybox", ["httpd", "-f", "-p", "80", "-h", "/var/www"], detach=True, name="sdk-server", network="sdk-net")
page = None
for _ in range(50):
    try:
        page = client.containers.run("busybox", ["timeout", "5", "wget", "-qO-", "http://sdk-server/"], network="sdk-net", remove=True)
        break
    except docker.errors.ContainerError:
        time.sleep(0.1)
assert page == b"hello-from-bosun\n", page
server.remove(force=True)
net.remove()

# Bad input: the SDK's own error types.
try:
    client.containers.get("no-such-container")
    raise AssertionError("expected NotFound")
except docker.errors.NotFound:
    pass
try:
    client.containers.create("no-such-image:1")
    raise AssertionError("expected ImageNotFound")
except docker.errors.ImageNotFound:
    pass
print("ok")
