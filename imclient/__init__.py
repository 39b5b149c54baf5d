"""Parley's client library: a Twisted client for the Parley wire protocol."""
