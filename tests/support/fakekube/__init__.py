"""A stateful fake kube-apiserver over real HTTP, for driving code that uses the
official ``kubernetes`` Python client (stdlib only: ``http.server``).

Served: ``kubevirt.io/v1`` virtualmachineinstances (also as ``v1alpha3``, one storage)
and kubevirts (custom-resource rules), core ``v1`` configmaps, secrets, pods, nodes and
events, ``apps/v1`` deployments, ``coordination.k8s.io/v1`` leases, ``events.k8s.io/v1``
events (the same stored events as core ``v1``), the cluster-scoped
``admissionregistration.k8s.io/v1`` validatingwebhookconfigurations and
``apiextensions.k8s.io/v1`` customresourcedefinitions (a stored CRD's printer columns give
``kubectl get`` its table, ``tables.py``), and discovery (``/api``, ``/api/v1``, ``/apis``,
``/apis/{group}[/{version}]``, ``/version``).

Behaviour follows the real server where a node agent can notice the difference:
one global resourceVersion; list/watch with label and field selectors; a watch from
``""``/``"0"`` starts with synthetic ADDED events for existing objects; a watch
from an RV older than the retained history gets a 410 ERROR event; bookmarks when
allowed; objects that stop (start) matching a watch's selector arrive as DELETED
(ADDED); 409 on stale RV for PUT/PATCH; custom resources refuse strategic merge
(415) and unconditional PUT (422); the status subresource (when enabled) splits
status from the rest; generation follows apiextensions rules; finalizers delay
deletion; no-op writes do not bump the RV.

Validating admission webhooks registered through the API are called over HTTPS on
create and update (``admission.py``).

``FakeCluster`` (``cluster.py``; fixture ``fake_cluster``) adds what a cluster does around
the API server: graceful pod deletion, ownerReference garbage collection (background),
a scheduler, and a kubelet per node that runs each bound pod as local processes.

Not modelled: namespaces (any namespace exists), authn/authz, mutating admission, server-side
apply, dryRun (rejected with 400), on a bare server graceful pod deletion (pods go at once)
and garbage collection (propagationPolicy is ignored), managedFields, list paging
(``limit`` is ignored; lists are always served at the latest RV).
"""

from .httpapi import FaultRule, RequestRecord
from .resources import ResourceType
from .server import FakeApiServer

__all__ = ["FakeApiServer", "FaultRule", "RequestRecord", "ResourceType"]
