"""sources/kube_client.py: the client's ApiClient without the package's __init__, and the whole package on demand.

Run in a fresh interpreter: in the test process another test may have imported
the kubernetes package whole already, and then there is nothing to defer.
"""

import subprocess
import sys

CHECK = """
import sys
import clusterdns.sources.kube_client as kube_client
held = sorted(m for m in sys.modules if m.startswith("kubernetes"))
assert "kubernetes.client.models.v1_pod" not in held, held  # no generated model
assert "kubernetes.client.api.core_v1_api" not in held, held  # no generated API class
assert "kubernetes.config.kube_config" not in held and "oauthlib" not in sys.modules, held  # loader on demand
from kubernetes import client, config, stream  # code that wants the whole client gets it
assert client.ApiClient is kube_client.ApiClient and client.ApiException is kube_client.ApiException
assert client.CoreV1Api.__module__ == "kubernetes.client.api.core_v1_api"
assert client.models.V1Pod.__name__ == "V1Pod" and config.ConfigException is kube_client.ConfigException
assert callable(config.load_kube_config) and stream.__name__ == "kubernetes.stream"
print("ok")
"""


def test_the_watch_imports_only_what_it_uses_and_the_rest_comes_on_first_touch():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
