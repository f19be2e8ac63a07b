"""The web client's own unit tests (vitest, in frontend/), as part of the suite.

They pin the client-side logic no browser test reaches cheaply: the
message list merge (dedupe by id, resume and its gaps, DELETE, folding
join/leave runs, date lines), own messages until they come back, links,
and error wording.
"""

from __future__ import annotations

import os
import shutil

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.frontend import require_frontend_modules
from tests.services import unavailable


class VitestTests(TestCase):
    timeout = 180

    async def test_vitest_suite_passes(self) -> None:
        frontend = require_frontend_modules("vitest")
        npm = shutil.which("npm")
        if npm is None:
            unavailable("no `npm` on PATH")
        out, err, code = await getProcessOutputAndValue(
            npm, ["test", "--silent", "--", "--reporter=dot"], env=dict(os.environ, CI="1", NO_COLOR="1"),
            path=frontend, reactor=reactor,
        )
        text = (out + err).decode("utf-8", "replace")
        print(text[-1500:])
        self.assertEqual(code, 0, text[-4000:])
        self.assertRegex(text, r"Tests\s+\d+ passed")
