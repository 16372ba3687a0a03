"""``--reach forward``: a loopback address per Service, relayed to a ready pod through the API.

For each Service answered with a loopback address, a TCP listener on that
address and each of the Service's TCP ports.  Each connection accepted is
relayed to one ready endpoint pod through the pod's ``portforward``
subresource, with the official client (``kubernetes.stream.portforward``,
the websocket ``v4.channel.k8s.io`` protocol).  Nothing is opened towards the
cluster until a connection arrives; each connection picks a ready endpoint
anew, so the forward follows endpoint changes (a pod replaced by a rollout
serves the next connection).  UDP ports are not forwarded: the API's
port-forward carries TCP only.

On Linux every 127/8 address is local.  On macOS each address needs an lo0
alias first (``clusterdns dev setup`` prints them); a listener that cannot
bind says so once, with the command that fixes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..objects import Service
from ..records import ready_endpoints

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api  # imported on the first forward: it loads the kubernetes client

log = logging.getLogger("clusterdns.dev.forward")

RELAY_CHUNK = 65536
CONNECT_TIMEOUT = 10.0  # seconds for the API to open a port-forward stream


@dataclass
class Backend:
    """Where one connection goes: a pod and the port it listens on."""

    namespace: str
    pod: str
    port: int


@dataclass
class ForwardedService:
    """The listeners of one Service, and how many connections they relayed."""

    context: str
    namespace: str
    name: str
    address: str
    pod: str = ""  # a named endpoint's forward goes to this pod only
    ports: dict[int, asyncio.base_events.Server] = field(default_factory=dict)
    connections: int = 0
    failures: int = 0
    last_error: str = ""


def pick_backend(service: Service, slices, service_port: int, pod: str = "") -> Backend | None:
    """A ready endpoint with a pod behind it (``pod``, if named), and the pod port for ``service_port``.

    The endpoint port is the one with the service port's name (how the
    EndpointSlice controller names them); a numeric ``targetPort`` is used
    when the slice names no ports.
    """
    sp = next((p for p in service.ports if p.port == service_port and p.protocol == "TCP"), None)
    if sp is None:
        return None
    for endpoint, slice_ in ready_endpoints(slices):
        if not endpoint.target_pod or (pod and endpoint.target_pod != pod):
            continue
        port = next((p.port for p in slice_.ports if p.name == sp.name and p.protocol == "TCP"), None)
        if port is None:
            port = sp.target_port if isinstance(sp.target_port, int) else sp.port
        return Backend(slice_.namespace, endpoint.target_pod, port)
    return None


class PortForwards:
    """Every forwarded Service's listeners; :meth:`close` stops them all.

    ``open_stream(context, backend)`` opens a port-forward to the backend and
    returns a connected socket (it blocks: it runs in a thread).
    ``backend_for(context, namespace, name, port, pod)`` picks the endpoint
    for a new connection (``pod`` "": any ready one), from the context's
    current state.  Forwards are keyed by (context, namespace, Service, label):
    label "" for the Service's own address, an endpoint's hostname for a pod's.
    """

    def __init__(
        self,
        open_stream: Callable[[str, Backend], socket.socket],
        backend_for: Callable[[str, str, str, int, str], Backend | None],
    ):
        self.open_stream = open_stream
        self.backend_for = backend_for
        self.services: dict[tuple[str, str, str, str], ForwardedService] = {}
        self._relays: set[asyncio.Task] = set()
        self._refused: set[tuple[str, int]] = set()  # binds that failed, reported once

    async def ensure(self, context: str, service: Service, address: str, label: str = "", pod: str = "") -> None:
        """Listen on ``address`` for each of ``service``'s TCP ports (and on no others)."""
        key = (context, service.namespace, service.name, label)
        forwarded = self.services.get(key)
        if forwarded is not None and (forwarded.address, forwarded.pod) != (address, pod):
            await self.remove(key)
            forwarded = None
        if forwarded is None:
            forwarded = self.services[key] = ForwardedService(context, service.namespace, service.name, address, pod)
        wanted = {p.port for p in service.ports if p.protocol == "TCP"}
        for port in sorted(set(forwarded.ports) - wanted):
            forwarded.ports.pop(port).close()
        for port in sorted(wanted - set(forwarded.ports)):
            try:
                forwarded.ports[port] = await asyncio.start_server(
                    functools.partial(self._accept, key=key, port=port), address, port, reuse_address=True
                )
            except OSError as exc:
                if (address, port) not in self._refused:
                    self._refused.add((address, port))
                    hint = ""
                    if sys.platform == "darwin":
                        hint = f" (macOS: sudo ifconfig lo0 alias {address} up, or `clusterdns dev setup --apply`)"
                    elif port < 1024:
                        hint = (" (Linux: ports below 1024 need root, unless `sudo sysctl "
                                "net.ipv4.ip_unprivileged_port_start=0` allows them)")
                    log.warning("cannot forward %s/%s%s: listening on %s port %d failed: %s%s", service.namespace,
                                service.name, f" (pod {pod})" if pod else "", address, port, exc.strerror or exc, hint)
                forwarded.last_error = f"cannot listen on {address}:{port}: {exc.strerror or exc}"
                continue
            log.info("forwarding %s:%d to service %s/%s%s of context %s", address, port, service.namespace,
                     service.name, f" (pod {pod})" if pod else "", context)

    def keys_of(self, context: str, namespace: str, name: str) -> list[tuple[str, str, str, str]]:
        """The forwards of one Service: its own and its pods'."""
        return [k for k in self.services if k[:3] == (context, namespace, name)]

    async def remove(self, key: tuple[str, str, str, str]) -> None:
        forwarded = self.services.pop(key, None)
        if forwarded is None:
            return
        for server in forwarded.ports.values():
            server.close()
        for server in forwarded.ports.values():
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      key: tuple[str, str, str, str], port: int) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection's callback as a task
        self._relays.add(task)
        forwarded = self.services.get(key)
        context, namespace, name, _ = key
        pod = forwarded.pod if forwarded is not None else ""
        try:
            backend = self.backend_for(context, namespace, name, port, pod)
            if backend is None:
                which = f"pod {pod} is not a ready endpoint of" if pod else "no ready endpoint with a pod serves"
                self._failed(forwarded, f"{which} service {namespace}/{name} port {port}")
                return
            try:
                remote = await asyncio.wait_for(asyncio.to_thread(self.open_stream, context, backend), CONNECT_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 (any failure of the API: report it, drop this connection)
                self._failed(forwarded, f"port-forward to pod {backend.namespace}/{backend.pod} port {backend.port} "
                             f"failed: {exc}")
                return
            if forwarded is not None:
                forwarded.connections += 1
            await _relay(reader, writer, remote)
        except asyncio.CancelledError:
            pass
        finally:
            self._relays.discard(task)
            writer.transport.abort()

    def _failed(self, forwarded: ForwardedService | None, message: str) -> None:
        log.warning("%s", message)
        if forwarded is not None:
            forwarded.failures += 1
            forwarded.last_error = message

    async def close(self) -> None:
        for key in list(self.services):
            await self.remove(key)
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: socket.socket) -> None:
    """Copy both ways until either side ends; then close both (the port-forward has no half-close)."""
    remote.setblocking(False)
    remote_reader, remote_writer = await asyncio.open_connection(sock=remote)

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(RELAY_CHUNK):
                dst.write(data)
                await dst.drain()

    tasks = [asyncio.ensure_future(pump(reader, remote_writer)), asyncio.ensure_future(pump(remote_reader, writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        remote_writer.transport.abort()


class KubePortForward:
    """Opens port-forward streams with the official client, one API client per context (made on first use)."""

    def __init__(self, configuration_for: Callable[[str], object]):
        self._configuration_for = configuration_for
        self._apis: dict[str, CoreV1Api] = {}
        self._lock = threading.Lock()

    def __call__(self, context: str, backend: Backend) -> socket.socket:
        from kubernetes import client
        from kubernetes.stream import portforward

        with self._lock:
            api = self._apis.get(context)
            if api is None:
                api = self._apis[context] = client.CoreV1Api(client.ApiClient(self._configuration_for(context)))
        forward = portforward(api.connect_get_namespaced_pod_portforward, backend.pod, backend.namespace,
                              ports=str(backend.port))
        wrapped = forward.socket(backend.port)
        # The client wraps its socketpair end to ignore TCP options; asyncio needs the plain socket
        # itself (a dup would not tell the client's proxy thread when we close).
        return getattr(wrapped, "_socket", wrapped)
