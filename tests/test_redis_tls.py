"""``rediss://``: the buffer over TLS to a private redis-server, with the
certificate checked against a CA the test makes."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.trial import unittest

from anonchat.chat.ports import BufferUnavailable
from anonchat.store.redis_buffer import RedisStreamBuffer, parse_redis_url
from tests.buffer_contract import Recorder, chat
from tests.privateredis import PrivateRedis
from tests.test_buffer_redis import poll


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
        self.directory = tempfile.mkdtemp(prefix="anonchat-redis-pki-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        make_pki(self.directory)
        path = self.directory
        server = PrivateRedis(self, "--tls-cert-file", f"{path}/server.pem", "--tls-key-file", f"{path}/server.key",
                              "--tls-ca-cert-file", f"{path}/ca.pem", "--tls-auth-clients", "no", tls=True)
        # Debian's redis-server is built with TLS; one that is not refuses these options and exits.
        await server.start()
        self.port = server.port

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
        # the handshake fails during the connection wait or just after it
        self.assertRegex(str(refused.exception), "Redis start failed|not connected to Redis")

