"""sipagent: voice AI agents on SIP trunks through FreeSWITCH."""

__version__ = "0.1.0"
