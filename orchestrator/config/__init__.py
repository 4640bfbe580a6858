"""The deployment file: model, loading with positions, validation and cross-checks."""

from orchestrator.config.diagnostics import DeploymentError, Diagnostic, Severity
from orchestrator.config.load import LoadResult, check_file, check_text, load_deployment
from orchestrator.config.model import Deployment

__all__ = [
    "Deployment",
    "DeploymentError",
    "Diagnostic",
    "LoadResult",
    "Severity",
    "check_file",
    "check_text",
    "load_deployment",
]
