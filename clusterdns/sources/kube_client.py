"""The parts of the official kubernetes client the watch uses, without the rest of the package.

``import kubernetes`` (any ``kubernetes.*``) first runs the package's
``__init__``, which imports every generated model (~1,000 classes), the dynamic
client, the watch and stream helpers, and the API classes whose ~1,300
methods pydantic wraps: ~35 MB of RSS and ~0.5 s that a DNS server never
uses, since it reads list and watch responses as raw JSON.  Here those
packages (``kubernetes``, ``kubernetes.client``, and the models, utils and
config packages below them) are registered with their ``__init__``
unexecuted, and only the submodules we need are imported: the configuration,
the in-cluster config loader (the kubeconfig one when first used),
``ApiClient`` (authentication, TLS, the urllib3 pool) and ``ApiException``.

The first touch of anything else in such a package (``from kubernetes import
stream``, ``kubernetes.client.CoreV1Api``, a model) runs its real ``__init__``
into the same module object, so code that wants the whole client still gets
it, with the same classes.

Requests go through :meth:`ApiClient.call_api`: the client builds the URL,
the query and the credentials headers; we pick the path.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any


def _defer_init(name: str) -> None:
    """Register package ``name`` without running its ``__init__`` until an attribute it lacks is asked for."""
    if name in sys.modules:
        return  # already imported (whole, or deferred): nothing to save
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a package we know how to defer; let the plain import happen
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):  # import machinery probes (__path__ is set; __file__ etc. are not lazy)
            raise AttributeError(attr)
        del module.__dict__["__getattr__"]
        loader.exec_module(module)  # the package's own __init__, into this module object
        return getattr(module, attr)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = module
    if "." in name:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)


for _package in ("kubernetes", "kubernetes.client", "kubernetes.client.models", "kubernetes.utils", "kubernetes.config"):
    _defer_init(_package)

from kubernetes.client.api_client import ApiClient  # noqa: E402
from kubernetes.client.configuration import Configuration  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

# What kubernetes/client/__init__ would bind and the config loaders import from it.
_client: ModuleType = sys.modules["kubernetes.client"]
for _attr, _value in (("ApiClient", ApiClient), ("Configuration", Configuration), ("ApiException", ApiException)):
    if _attr not in _client.__dict__:
        setattr(_client, _attr, _value)

from kubernetes.config.config_exception import ConfigException  # noqa: E402
from kubernetes.config.incluster_config import load_incluster_config  # noqa: E402

__all__ = ["ApiClient", "ApiException", "ConfigException", "Configuration", "get", "load_incluster_config",
           "load_kube_config"]


def load_kube_config(**kwargs: Any) -> None:
    """``kubernetes.config.load_kube_config``, imported when first used.

    The kubeconfig loader brings requests, oauthlib and requests-oauthlib (its
    OIDC and Azure helpers): ~6 MB that a server running in a pod, which reads
    its service account instead, never needs.
    """
    from kubernetes.config.kube_config import load_kube_config as load

    load(**kwargs)


def get(api_client: ApiClient, path: str, query: dict[str, Any], timeout: Any) -> Any:
    """GET ``path`` with ``query`` (None values left out); the urllib3 response, unread.

    A status outside 2xx raises :class:`ApiException` carrying the status,
    reason, headers and body, as the generated methods do with
    ``_preload_content=False``.
    """
    method, url, headers, body, post_params = api_client.param_serialize(
        method="GET",
        resource_path=path,
        query_params=[(k, v) for k, v in query.items() if v is not None],
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(method, url, headers, body, post_params, _request_timeout=timeout)
    if not 200 <= response.status <= 299:
        response.read()
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response.response
