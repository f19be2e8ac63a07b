"""The anonchat package; building it also builds the web client.

The React client's source is frontend/; its build (anonchat/web/static:
index.html, assets/, sockjs.min.js) is not committed, so build_py and
sdist run ``npm ci && npm run build`` there whenever it is missing. An
sdist carries the built files, so installing one needs no npm.
"""

import os
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
FRONTEND = os.path.join(HERE, "frontend")
STATIC = os.path.join(HERE, "anonchat", "web", "static")


def frontend_built() -> bool:
    return (
        os.path.isfile(os.path.join(STATIC, "index.html"))
        and os.path.isfile(os.path.join(STATIC, "sockjs.min.js"))
        and os.path.isdir(os.path.join(STATIC, "assets"))
    )


def build_frontend() -> None:
    """npm ci && npm run build in frontend/, unless the built files are there."""
    if frontend_built():
        return
    if not os.path.isfile(os.path.join(FRONTEND, "package.json")):
        raise SystemExit(f"anonchat: the web client is not built in {STATIC} and its source {FRONTEND} is missing")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "anonchat: building the web client (frontend/) needs npm (Node.js >= 20.19), "
            "and there is no npm on PATH. Install Node.js (Debian: apt-get install nodejs npm), or install "
            "from an sdist, which carries the built files."
        )
    for args in (["ci", "--no-audit", "--no-fund", "--loglevel=error"], ["run", "build"]):
        print("anonchat: npm " + " ".join(args) + " in frontend/", flush=True)
        result = subprocess.run([npm, *args], cwd=FRONTEND)
        if result.returncode != 0:
            raise SystemExit(f"anonchat: `npm {' '.join(args)}` in {FRONTEND} failed (exit {result.returncode})")
    if not frontend_built():
        raise SystemExit(f"anonchat: `npm run build` left no index.html/sockjs.min.js/assets in {STATIC}")


class BuildPyWithFrontend(build_py):
    def run(self) -> None:
        build_frontend()
        super().run()


class SdistWithFrontend(sdist):
    def run(self) -> None:
        build_frontend()
        super().run()


setup(
    name="anonchat",
    version="0.1",
    description="Anonymous real-time chat backend: STOMP over WebSocket and SockJS on Twisted",
    long_description=open(os.path.join(HERE, "README.rst"), encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.10",
    packages=find_packages(include=["anonchat", "anonchat.*"]) + ["twisted.plugins"],
    package_data={
        "anonchat": ["web/static/*", "web/static/assets/*", "sql/*"],
        "twisted.plugins": ["anonchat_plugin.py"],
    },
    include_package_data=True,
    cmdclass={"build_py": BuildPyWithFrontend, "sdist": SdistWithFrontend},
    install_requires=[
        "Twisted[tls]>=24.3",
        "autobahn>=24.4",
        "txredisapi>=1.4.10",
        # txredisapi parses replies with hiredis when it is installed: ~3x faster feed reads
        "hiredis>=2.0",
        "PyMySQL>=1.1",
        "attrs>=23.1",
        "service-identity>=24.1",
        "zope.interface>=6",
        "prometheus-client>=0.20",
        # signed access tokens (HS256, and RS256/ES256 with cryptography)
        "PyJWT[crypto]>=2.8",
    ],
    extras_require={
        "test": ["hypothesis>=6.100"],
        "dev": ["mypy>=1.10", "tox>=4"],
    },
    zip_safe=False,
)
