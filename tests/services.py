"""Where the tests find real Redis and MariaDB, and what they do without them.

``ANONCHAT_TEST_REDIS_URL`` / ``ANONCHAT_TEST_MYSQL_URL`` name the servers
(defaults: the local ones, on a Redis db and a database of our own). When a
server cannot be reached the test is skipped with a message naming the
variable, unless ``ANONCHAT_TEST_REQUIRE_SERVICES=1`` (CI), which fails it.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn
from urllib.parse import urlsplit

from twisted.trial.unittest import SkipTest

REDIS_URL_VAR = "ANONCHAT_TEST_REDIS_URL"
MYSQL_URL_VAR = "ANONCHAT_TEST_MYSQL_URL"
REQUIRE_VAR = "ANONCHAT_TEST_REQUIRE_SERVICES"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
DEFAULT_MYSQL_URL = "mysql://root:@127.0.0.1:3306/anonchat_test"


def redis_url() -> str:
    return os.environ.get(REDIS_URL_VAR) or DEFAULT_REDIS_URL


def mysql_url() -> str:
    return os.environ.get(MYSQL_URL_VAR) or DEFAULT_MYSQL_URL


def services_required() -> bool:
    return os.environ.get(REQUIRE_VAR, "") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def unavailable(problem: str) -> NoReturn:
    """Skip for a missing server or tool; fail instead under the CI variable."""
    if services_required():
        raise AssertionError(f"{problem} and {REQUIRE_VAR}=1")
    raise SkipTest(problem)


def _require(url: str, default_port: int, variable: str) -> str:
    if _reachable(url, default_port):
        return url
    unavailable(f"no server at {variable}={url}")


E2E_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e")


def require_node(*packages: str) -> str:
    """``node``, with these npm packages installed in tests/e2e."""
    node = shutil.which("node")
    if node is None:
        unavailable("no `node` on PATH")
    for package in packages:
        if not os.path.isdir(os.path.join(E2E_DIR, "node_modules", package)):
            unavailable(f"tests/e2e/node_modules/{package} is missing; run `npm ci` in tests/e2e")
    return node


def require_redis() -> str:
    """The Redis URL to test against, or skip/fail as the environment says."""
    return _require(redis_url(), 6379, REDIS_URL_VAR)


def require_mysql() -> str:
    """The MySQL URL to test against, or skip/fail as the environment says."""
    return _require(mysql_url(), 3306, MYSQL_URL_VAR)
