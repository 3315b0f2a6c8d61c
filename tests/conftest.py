"""Shared test setup: torch threads capped like the app does, so parallel suites do not thrash;
hypothesis profiles."""

import os

from hypothesis import settings

from initviz.devices import limit_threads

limit_threads()

# No deadlines: they are timing assertions, which tests do not make (timings go to benchmarks/).
# Under CI every run draws the same examples, so a failure there can be reproduced.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
