"""``Serving`` in process: which listener failures stop it and which it serves on through."""

from __future__ import annotations

import errno
import logging
import socket

import dns.asyncquery
import dns.message
import pytest

from clusterdns.serving import ListenError, ServeOptions, Serving

from .conftest import ZONES


def _options(http_port: int, http_required: bool) -> ServeOptions:
    return ServeOptions(
        listen=[("127.0.0.1", 0)], http=("127.0.0.1", http_port), manifests=[str(ZONES)], http_required=http_required
    )


async def test_a_taken_default_http_port_does_not_stop_dns(caplog):
    with socket.create_server(("127.0.0.1", 0)) as busy:  # someone's dev server on "8080"
        taken = busy.getsockname()[1]
        serving = Serving(_options(taken, http_required=False))
        try:
            with caplog.at_level(logging.WARNING, logger="clusterdns"):
                await serving.start()
            host, port = serving.dns_server.addresses[0]
            q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
            reply = await dns.asyncquery.udp(q, host, port=port, timeout=3)
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.1"]
            assert serving.http is None
        finally:
            await serving.close()
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"cannot listen for HTTP on 127.0.0.1 port {taken}: Address already in use; serving DNS "
        "without /health, /ready and /metrics (choose a free address with --http HOST:PORT" in m
        for m in warning
    ), warning


async def test_a_taken_explicit_http_port_is_an_error():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        serving = Serving(_options(busy.getsockname()[1], http_required=True))
        with pytest.raises(ListenError, match="cannot listen for HTTP .* Address already in use"):
            await serving.start()
        await serving.close()
    assert not serving.dns_server.udp and not serving.dns_server.tcp  # nothing left listening


def test_a_taken_quick_start_port_names_what_usually_holds_it():
    from clusterdns.serving import _bind_hint

    busy = OSError(errno.EADDRINUSE, "Address already in use")
    assert "5353 is also the mDNS port" in _bind_hint("DNS", 5353, busy)
    assert _bind_hint("DNS", 5353, busy).endswith("choose another with --listen HOST:PORT)")
    assert "8080 is a common development port" in _bind_hint("HTTP", 8080, busy)
    assert "--http ''" in _bind_hint("HTTP", 8080, busy)
    denied = OSError(errno.EACCES, "Permission denied")
    assert "need root or CAP_NET_BIND_SERVICE" in _bind_hint("DNS", 53, denied)
