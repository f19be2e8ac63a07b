from setuptools import find_packages, setup

setup(
    name="anonchat",
    version="0.1",
    description="Anonymous real-time chat backend: STOMP over WebSocket and SockJS on Twisted",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.10",
    packages=find_packages(include=["anonchat", "anonchat.*"]) + ["twisted.plugins"],
    package_data={"anonchat": ["web/static/*", "sql/*"], "twisted.plugins": ["anonchat_plugin.py"]},
    include_package_data=True,
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
