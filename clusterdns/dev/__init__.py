"""The laptop resolver: ``clusterdns dev`` and ``clusterdns dev setup``.

Cluster names for every kubeconfig context, answered on a high loopback port
with addresses the laptop can reach, and the split-DNS wiring that sends only
the cluster zones there.  Modules:

* :mod:`.contexts` — kubeconfig contexts, their DNS labels and zones.
* :mod:`.setup` — the per-OS files and commands of ``dev setup``, apply/undo with a state record.
* :mod:`.upstreams` — where "everything else" goes: captured at setup, never back to us.
* :mod:`.reach` — which address a Service answers with: cluster IP, external, or a forwarded loopback.
* :mod:`.portforward` — loopback listeners relaying to pods through the API's port-forward.
* :mod:`.context_dns` — one context's object store, answered under its zones; SERVFAIL while unsure.
* :mod:`.responder` — one DNS front for many contexts: routes by zone, short forms, the rest forwarded.
* :mod:`.serving` — runs it all; :mod:`.status` — ``dev status`` (the server's ``/status``);
  :mod:`.cli` — the command line of ``dev``, ``dev setup`` and ``dev status``.
"""
