"""kubelet's rules for a pod's resolv.conf (dns.go) and service environment variables (envvars.go)."""

from clusterdns.kubelet import pod_resolv_conf, service_env
from clusterdns.objects import PodDNSConfig
from clusterdns.searchpath import ResolvConf
from tests import builders

HOST = ResolvConf(("192.0.2.53",), ("corp.example", "cluster.local"), ("ndots:2", "timeout:1"))


def conf(namespace="shop", **kwargs):
    kwargs.setdefault("cluster_domain", "cluster.local.")
    kwargs.setdefault("cluster_dns", ("10.96.0.10",))
    return pod_resolv_conf(namespace, **kwargs)


def test_cluster_first_appends_the_hosts_domains_without_repeats():
    result = conf(host=HOST)
    assert result.conf.search == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example")
    assert result.conf.nameservers == ("10.96.0.10",) and result.conf.options == ("ndots:5",)
    assert result.warnings == []


def test_default_policy_is_the_nodes_resolv_conf_and_host_network_cluster_first_falls_back_to_it():
    assert conf(policy="Default", host=HOST).conf == HOST
    fallback = conf(host_network=True, host=HOST)
    assert fallback.conf == HOST and "hostNetwork" in fallback.warnings[0]
    assert conf(policy="ClusterFirstWithHostNet", host_network=True, host=HOST).conf.nameservers == ("10.96.0.10",)
    # kubelet started with --resolv-conf="": the local resolver, search "."
    assert conf(policy="Default").conf == ResolvConf(("127.0.0.1",), (".",), ())


def test_dns_config_is_merged_and_none_takes_only_it():
    extra = PodDNSConfig(("10.0.0.53", "10.96.0.10"), ("example.org",), (("ndots", "2"), ("edns0", None)))
    merged = conf(dns_config=extra).conf
    assert merged.nameservers == ("10.96.0.10", "10.0.0.53")
    assert merged.search[-1] == "example.org"
    assert merged.options == ("ndots:2", "edns0")  # dnsConfig overrides kubelet's ndots:5
    only = conf(policy="None", dns_config=extra).conf
    assert only == ResolvConf(("10.0.0.53", "10.96.0.10"), ("example.org",), ("ndots:2", "edns0"))


def test_kubelets_limits():
    many = PodDNSConfig(("10.0.0.1", "10.0.0.2", "10.0.0.3"), tuple(f"d{i}.example" for i in range(40)))
    result = conf(dns_config=many)
    assert len(result.conf.nameservers) == 3 and len(result.conf.search) == 32
    assert any("nameservers" in w for w in result.warnings) and any("search line" in w for w in result.warnings)
    long = PodDNSConfig(searches=("x" * 254, *(f"{'y' * 200}{i}.example" for i in range(12))))
    fitted = conf(dns_config=long).conf.search
    assert "x" * 254 not in fitted and len(" ".join(fitted)) <= 2048
    assert fitted[:3] == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")


def test_service_environment_follows_kubelets_names():
    services = [
        builders.service("my-db", ns="shop", cluster_ip="10.96.1.1", ports=(("pg-main", 5432, None), ("", 9187, None))),
        builders.service("headless", ns="shop", cluster_ip=None, clusterIP="None"),
        builders.service("ext", ns="shop", cluster_ip=None, type="ExternalName", externalName="db.example.com"),
        builders.service("kubernetes", ns="default", cluster_ip="10.96.0.1", ports=(("https", 443, None),)),
        builders.service("other", ns="default", cluster_ip="10.96.2.2"),
    ]
    env = service_env(services, "shop")
    assert env["MY_DB_SERVICE_HOST"] == "10.96.1.1"
    assert env["MY_DB_SERVICE_PORT"] == "5432" and env["MY_DB_SERVICE_PORT_PG_MAIN"] == "5432"
    assert env["MY_DB_PORT"] == "tcp://10.96.1.1:5432"
    assert env["MY_DB_PORT_9187_TCP"] == "tcp://10.96.1.1:9187"
    assert env["MY_DB_PORT_9187_TCP_PROTO"] == "tcp" and env["MY_DB_PORT_9187_TCP_PORT"] == "9187"
    assert env["MY_DB_PORT_9187_TCP_ADDR"] == "10.96.1.1"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"  # the master service is always there
    assert not any(k.startswith(("HEADLESS_", "EXT_", "OTHER_")) for k in env)
    assert list(env) == sorted(env)
    assert set(service_env(services, "shop", enable_service_links=False)) == {k for k in env if k.startswith("KUBERNETES_")}
