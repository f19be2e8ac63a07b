"""Where the tests find the web client: its build in the package's static
files and its source (with node_modules) in frontend/.

Without them a test skips, naming the command that makes them, unless
``ANONCHAT_TEST_REQUIRE_SERVICES=1`` (CI), which fails it.
"""

from __future__ import annotations

import os

from anonchat.web.site import STATIC_DIR
from tests.services import unavailable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND_DIR = os.path.join(REPO, "frontend")


def require_built_client() -> str:
    """The static directory, holding the built client."""
    for name in ("index.html", "sockjs.min.js", "assets"):
        if not os.path.exists(os.path.join(STATIC_DIR, name)):
            unavailable(f"the web client is not built ({STATIC_DIR}/{name} is missing): "
                        "pip install -e . or `npm ci && npm run build` in frontend/")
    return STATIC_DIR


def require_frontend_modules(package: str) -> str:
    """frontend/, with this npm package installed."""
    if not os.path.isdir(os.path.join(FRONTEND_DIR, "node_modules", package)):
        unavailable(f"frontend/node_modules/{package} is missing: run `npm ci` in frontend/")
    return FRONTEND_DIR
