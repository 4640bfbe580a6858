"""The FreeSWITCH nodes of a deployment, as event-socket endpoints (the controller, ``apply`` and ``doctor`` use it)."""

from __future__ import annotations

from orchestrator.config.model import Deployment
from orchestrator.esl.client import Endpoint


def node_endpoints(deployment: Deployment) -> list[Endpoint]:
    """The event sockets of the deployment's FreeSWITCH nodes: those behind the edge, else orchestrator.nodes,
    else the node at freeswitch.event_socket."""
    esl = deployment.freeswitch.event_socket
    if deployment.edge is not None:
        return [
            Endpoint(n.esl_host, n.esl.port, (n.esl.password or esl.password).get_secret_value(), n.name)
            for n in deployment.edge.nodes
        ]
    nodes = deployment.orchestrator.nodes
    if not nodes:
        host = "127.0.0.1" if esl.listen_ip in ("0.0.0.0", "::") else esl.listen_ip
        return [Endpoint(host, esl.port, esl.password.get_secret_value(), "fs1")]
    return [Endpoint(n.host, n.port, (n.password or esl.password).get_secret_value(), n.name) for n in nodes]
