"""The pods/{name}/portforward subresource of the fake API server: websocket, ``v4.channel.k8s.io``.

What the official client (``kubernetes.stream.portforward``, websocket-client
underneath) expects, written by hand on the fake's HTTP/1.1 handler:

* the upgrade handshake (101, ``Sec-WebSocket-Accept``, the chosen subprotocol);
* for each requested port ``i``, a first frame on channel ``2i`` (data) and one on
  ``2i+1`` (errors), each the channel byte and the port number, 2 bytes little-endian;
* then binary frames whose first byte is the channel: client data on ``2i`` is
  written to the pod's port, the pod's bytes come back on ``2i``.

"The pod's port" is a TCP address the test names with
:meth:`FakeApiServer.port_forward_to` (an echo server in the test).  The
connection ends when either side closes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import select
import socket
import struct
from typing import Any
from urllib.parse import parse_qs

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "v4.channel.k8s.io"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
POLL = 0.05  # seconds between checks that the server is stopping


def serve_port_forward(handler: Any, namespace: str, pod: str, query: str) -> None:
    """Answer one port-forward request on ``handler`` (a BaseHTTPRequestHandler of the fake)."""
    api = handler.server.api
    ports = [int(p) for v in parse_qs(query).get("ports", []) for p in v.split(",") if p.strip()]
    if api.get("Pod", namespace, pod) is None:
        return handler._send_json(404, _status(404, "NotFound", f'pods "{pod}" not found'))
    targets = [api.port_forward_target(namespace, pod, p) for p in ports]
    if not ports or None in targets or handler.headers.get("Upgrade", "").lower() != "websocket":
        return handler._send_json(400, _status(400, "BadRequest", "expected a websocket upgrade with known ports"))
    key = handler.headers.get("Sec-WebSocket-Key", "")
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    handler.send_header("Sec-WebSocket-Protocol", SUBPROTOCOL)
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    client = handler.connection
    pods: list[socket.socket] = []
    try:
        for target in targets:
            pods.append(socket.create_connection(target, timeout=5))
        for i, port in enumerate(ports):
            for channel in (2 * i, 2 * i + 1):
                client.sendall(frame(OP_BINARY, bytes([channel]) + struct.pack("<H", port)))
        api._count_port_forward(namespace, pod)
        _relay(api, client, pods)
    except OSError:
        pass
    finally:
        for sock in pods:
            with contextlib.suppress(OSError):
                sock.close()


def _relay(api: Any, client: socket.socket, pods: list[socket.socket]) -> None:
    buffer = b""
    channel_of = {sock: 2 * i for i, sock in enumerate(pods)}
    while not api._stopping:
        readable, _, _ = select.select([client, *pods], [], [], POLL)
        for sock in readable:
            if sock is client:
                data = client.recv(65536)
                if not data:
                    return
                buffer += data
                while (parsed := parse_frame(buffer)) is not None:
                    opcode, payload, buffer = parsed
                    if opcode == OP_CLOSE:
                        with contextlib.suppress(OSError):
                            client.sendall(frame(OP_CLOSE, payload[:2]))
                        return
                    if opcode == OP_PING:
                        client.sendall(frame(OP_PONG, payload))
                    elif opcode == OP_BINARY and payload and payload[0] % 2 == 0 and payload[0] // 2 < len(pods):
                        pods[payload[0] // 2].sendall(payload[1:])
            else:
                data = sock.recv(65536)
                if not data:  # the pod closed its side: so does the stream
                    with contextlib.suppress(OSError):
                        client.sendall(frame(OP_CLOSE, struct.pack("!H", 1000)))
                    return
                client.sendall(frame(OP_BINARY, bytes([channel_of[sock]]) + data))


def frame(opcode: int, payload: bytes) -> bytes:
    """A server frame: final, unmasked."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def parse_frame(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, unmasked payload, rest) of the first whole frame in ``data``; None if it is not all there."""
    if len(data) < 2:
        return None
    opcode, masked, n = data[0] & 0x0F, data[1] & 0x80, data[1] & 0x7F
    offset = 2
    if n == 126:
        if len(data) < 4:
            return None
        n, offset = struct.unpack("!H", data[2:4])[0], 4
    elif n == 127:
        if len(data) < 10:
            return None
        n, offset = struct.unpack("!Q", data[2:10])[0], 10
    mask = b""
    if masked:
        mask, offset = data[offset : offset + 4], offset + 4
    if len(data) < offset + n:
        return None
    payload = data[offset : offset + n]
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload, data[offset + n :]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
