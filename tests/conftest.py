"""Shared test setup: torch threads capped like the app does, so parallel suites do not thrash."""

from initviz.devices import limit_threads

limit_threads()
