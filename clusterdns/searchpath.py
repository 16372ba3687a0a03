"""resolv.conf, and the order in which a pod's stub resolver tries names.

Pure functions, no sockets: a resolv.conf read the way glibc reads it, and
which absolute names a lookup of a short name turns into, for glibc and for
musl.  Used by ``clusterdns resolve`` (:mod:`.stub` walks the candidates),
``clusterdns resolv-conf`` (:mod:`.kubelet` writes one) and autopath.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NDOTS = 5  # kubelet's value for ClusterFirst pods
MAX_SEARCH = 32  # glibc 2.26+ (older: 6); kubelet's limit too
RESOLVERS = ("glibc", "musl", "musl-old")  # musl-old: musl before 1.2.4 (no TCP fallback)
# glibc's limits on the numeric options (resolv.conf(5)).
LIMITS = {"ndots": (1, 15), "attempts": (2, 5), "timeout": (5, 30)}  # option: (default, maximum)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # as written: "ndots:5", "single-request", "timeout:2"

    @property
    def ndots(self) -> int:
        return self.number("ndots")

    @property
    def attempts(self) -> int:
        return max(1, self.number("attempts"))

    @property
    def timeout(self) -> int:
        return max(1, self.number("timeout"))

    def number(self, option: str) -> int:
        """A numeric option's value, capped as glibc caps it; the last one written wins."""
        default, maximum = LIMITS[option]
        value = default
        for text in self.options:
            name, _, number = text.partition(":")
            if name == option and number.isdigit():
                value = min(int(number), maximum)
        return value

    def has(self, option: str) -> bool:
        return option in self.options

    def render(self) -> str:
        lines = [f"search {' '.join(self.search)}"] if self.search else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append(f"options {' '.join(self.options)}")
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """Read resolv.conf the way glibc does: the last search/domain line wins, options accumulate."""
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
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
            options += args
    return ResolvConf(tuple(nameservers), search, tuple(options))


def candidates(name: str, conf: ResolvConf, resolver: str = "glibc") -> list[str]:
    """The absolute names a stub resolver asks for ``name``, in order.

    A trailing dot means exactly that name.  glibc (res_search): with at least
    ``ndots`` dots the name is tried as is first, then with each search
    domain; with fewer, the search domains come first and the name as is
    last.  musl uses the search list only for names with fewer than ``ndots``
    dots: a name with ``ndots`` or more is tried as is, and nothing else.
    """
    if name.endswith("."):
        return [name]
    with_domains = [f"{name}.{domain}." for domain in conf.search]
    as_is = f"{name}."
    if name.count(".") >= conf.ndots:
        return [as_is] if resolver != "glibc" else [as_is, *with_domains]
    return [*with_domains, as_is]
