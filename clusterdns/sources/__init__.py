"""Where objects come from: manifest files (``manifests``) or the Kubernetes API (``kube``)."""


class KubeConfigError(RuntimeError):
    """No usable credentials for the API server."""
