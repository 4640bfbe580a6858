"""Calls: FreeSWITCH events → call state → actions, records and metrics."""
