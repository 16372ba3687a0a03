"""resolv.conf as a pod sees it, and the order in which a glibc stub resolver tries names.

Pure functions, no sockets: what kubelet writes into a pod's resolv.conf
(``dnsPolicy: ClusterFirst``), and which absolute names a lookup of a short
name turns into.  Used by ``clusterdns resolve`` and ``clusterdns resolv-conf``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NDOTS = 5  # kubelet's value for ClusterFirst pods
MAX_SEARCH = 32  # glibc 2.26+ (older: 6); kubelet warns beyond it


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1  # glibc's default when resolv.conf says nothing

    def render(self) -> str:
        lines = [f"search {' '.join(self.search)}"] if self.search else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        lines.append(f"options ndots:{self.ndots}")
        return "\n".join(lines) + "\n"


def pod_resolv_conf(namespace: str, zone: str = "cluster.local", nameserver: str = "10.96.0.10") -> ResolvConf:
    """What kubelet writes for a ClusterFirst pod in ``namespace`` (before the node's own search domains)."""
    zone = zone.rstrip(".")
    return ResolvConf(
        nameservers=(nameserver,),
        search=(f"{namespace}.svc.{zone}", f"svc.{zone}", zone),
        ndots=DEFAULT_NDOTS,
    )


def parse_resolv_conf(text: str) -> ResolvConf:
    """Read resolv.conf the way glibc does: the last search/domain line wins, ndots from options."""
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    ndots = 1
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        if keyword == "nameserver" and args:
            nameservers.append(args[0])
        elif keyword in ("search", "domain"):
            search = tuple(a.rstrip(".") for a in args)[:MAX_SEARCH]
        elif keyword == "options":
            for option in args:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = min(int(option[6:]), 15)  # glibc caps ndots at 15
    return ResolvConf(tuple(nameservers), search, ndots)


def candidates(name: str, conf: ResolvConf) -> list[str]:
    """The absolute names a stub resolver asks for ``name``, in order (glibc res_search).

    A trailing dot means exactly that name.  With at least ``ndots`` dots the
    name is tried as is first, then with each search domain; with fewer, the
    search domains come first and the name as is last.
    """
    if name.endswith("."):
        return [name]
    with_domains = [f"{name}.{domain}." for domain in conf.search]
    as_is = f"{name}."
    if name.count(".") >= conf.ndots:
        return [as_is, *with_domains]
    return [*with_domains, as_is]
