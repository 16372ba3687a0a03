"""clusterdns: authoritative DNS for Kubernetes cluster names."""

__version__ = "0.1.0"
