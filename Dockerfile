# syntax=docker/dockerfile:1
#
# clusterdns image: python:3.11-slim, the package in a virtualenv, running as
# uid/gid 65532 with a read-only root filesystem in Kubernetes.
#
#   docker build -t clusterdns:0.1.0 .
#   docker run --rm -p 127.0.0.1:5353:5353/udp -v "$PWD/zones:/zones:ro" clusterdns:0.1.0 \
#       serve --manifests /zones --listen 0.0.0.0:5353 --http 0.0.0.0:8080

# ---------------------------------------------------------------- build stage
# Installs the package and its dependencies into /opt/clusterdns.  Only that
# directory reaches the final image: no pip cache, no build backend, no source.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/clusterdns
WORKDIR /src
# .dockerignore lets through only what `pip install .` needs.
COPY . .
# Bytecode is compiled here (pip's default) because the container's root
# filesystem is read-only: Python could not write __pycache__ at run time.
RUN /opt/clusterdns/bin/pip install . \
 && /opt/clusterdns/bin/clusterdns --help >/dev/null

# ---------------------------------------------------------------- final stage
FROM python:3.11-slim

# Binding port 53 as a non-root user.
#
# Kubernetes' `capabilities: add: [NET_BIND_SERVICE]` on its own does NOT let
# a non-root process bind :53.  The runtime puts the capability in the
# bounding and permitted sets of the process it starts, but execve() of a
# program as uid != 0 recomputes the sets from the program file: with no file
# capabilities and no ambient capabilities (Kubernetes has no way to set
# those) the new process ends up with none, and bind() fails with EACCES.
# CoreDNS hit exactly this (coredns/coredns#6320) and ships with a file
# capability for the same reason.
#
# So the interpreter gets a file capability, cap_net_bind_service=+ep.  It is
# set on the real file (python3.11), not the python/python3 symlinks; the
# `clusterdns` console script's shebang points into the venv, whose python is
# a symlink to this file, and the kernel applies the capabilities of the file
# it finally executes.  What this needs from the pod spec (20-deployment.yaml):
#   * capabilities add NET_BIND_SERVICE, which keeps it in the bounding set.
#     With `drop: [ALL]` and no add, exec of an "+ep" binary fails outright
#     with "operation not permitted" (the kernel refuses to start a
#     capability-aware binary it cannot give its capabilities to).
#   * allowPrivilegeEscalation: false (no_new_privs) is fine: the runtime
#     already has NET_BIND_SERVICE in the permitted set before exec, so exec
#     gains nothing new and no_new_privs has nothing to strip.
# Checked on Linux by exec'ing a copy of python3.11 as uid 65532 the way runc
# does (docs/deploy.md, "Why setcap").  Every python process in this image
# carries the capability: acceptable for a single-purpose image.  The
# capability-free alternative is the namespaced sysctl
# net.ipv4.ip_unprivileged_port_start=0 in the pod's securityContext (Docker
# >= 20.10 already sets it for its containers); the Deployment does not rely
# on it because not every cluster allows it.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libcap2-bin; \
    setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3)"; \
    getcap "$(readlink -f /usr/local/bin/python3)" | grep -q cap_net_bind_service; \
    apt-get purge -y --auto-remove libcap2-bin; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 65532 clusterdns; \
    useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin clusterdns

COPY --from=build /opt/clusterdns /opt/clusterdns

ENV PATH=/opt/clusterdns/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Numeric, so the kubelet can check runAsNonRoot without a passwd lookup.
USER 65532:65532
WORKDIR /

EXPOSE 53/udp 53/tcp 8080/tcp

ENTRYPOINT ["clusterdns"]
CMD ["serve", "--listen", "0.0.0.0:53", "--listen", "[::]:53", "--http", "0.0.0.0:8080"]
