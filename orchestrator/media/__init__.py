"""Media: FreeSWITCH's audio fork ⇄ the orchestrator's bridge ⇄ agents."""
