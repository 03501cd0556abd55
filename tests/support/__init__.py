"""Helpers shared by the test suites.

``tests.support.peers`` finds, runs and always stops the real third-party tools the tests talk to.
"""
