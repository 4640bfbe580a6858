"""The Kamailio edge in front of the FreeSWITCH pool, beyond rendering its configuration.

:mod:`~orchestrator.edge.dns` says which DNS records carriers need to find the edge (RFC 3263),
:mod:`~orchestrator.edge.jsonrpc` is JSON-RPC 2.0 as bytes (no I/O) and :mod:`~orchestrator.edge.rpc` the
thin asyncio client over Kamailio's jsonrpcs datagram socket that reloads the edge live.
"""
