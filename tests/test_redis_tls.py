"""``rediss://``: the buffer over TLS to a private redis-server, with the
certificate checked against a CA the test makes."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.trial import unittest

from anonchat.store.interfaces import BufferUnavailable
from anonchat.store.redis_buffer import RedisStreamBuffer, parse_redis_url
from tests.buffer_contract import Recorder, chat
from tests.test_buffer_redis import REDIS_SERVER, free_port, poll


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(directory: str) -> None:
    """ca.pem, and server.pem/server.key for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("anonchat test CA")).issuer_name(_name("anonchat test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(os.path.join(directory, "server.key"), "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class RedisTlsTests(unittest.TestCase):
    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        if not os.path.exists(REDIS_SERVER):
            raise unittest.SkipTest("no redis-server binary for a private TLS server")
        self.directory = tempfile.mkdtemp(prefix="anonchat-redis-tls-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        make_pki(self.directory)
        self.port = free_port()
        path = self.directory
        process = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", f"{path}/server.pem", "--tls-key-file", f"{path}/server.key",
             "--tls-ca-cert-file", f"{path}/ca.pem", "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            process.kill()
            process.wait()

        self.addCleanup(stop)
        if not await poll(lambda: _accepting(self.port), timeout=5):
            raise unittest.SkipTest("this redis-server was built without TLS")

    async def test_appends_and_feed_over_tls_with_a_trusted_ca(self) -> None:
        url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.directory}/ca.pem"
        self.assertTrue(parse_redis_url(url).tls)
        buffer = RedisStreamBuffer(reactor, url, block_ms=100)
        await buffer.start()
        self.addCleanup(buffer.stop)
        recorder = Recorder()
        buffer.add_listener(recorder)
        stored = [await buffer.append(chat(f"암호화 {i} 🔒")) for i in range(5)]
        self.assertTrue(await poll(lambda: len(recorder.messages) >= 5))
        self.assertEqual(recorder.messages, stored)
        self.assertTrue(await buffer.ping())

    async def test_an_untrusted_certificate_is_refused(self) -> None:
        from twisted.internet import reactor

        # The same server and URL as above but for the CA: the platform
        # trust store does not know the test CA, so the handshake fails.
        buffer = RedisStreamBuffer(reactor, f"rediss://127.0.0.1:{self.port}/0", command_timeout=1.0)
        with self.assertRaises(BufferUnavailable) as refused:
            await buffer.start()
        await buffer.stop()
        self.assertIn("Redis start failed", str(refused.exception))


def _accepting(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
