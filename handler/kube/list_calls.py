"""The list calls that both the agent and the controller watch with, their positional arguments bound.

Each is a plain closure without a docstring on purpose: ``watch.Watch`` reads the model type
from a list method's docstring, and finding none it leaves every event as the raw dict the
informers keep, with no model built that nobody reads. The calls of one caller only stay beside
it, so tests/deploy/test_rbac.py still finds each program's API calls in the modules it imports.
"""

from __future__ import annotations

from typing import Unpack

from kubernetes import client

from handler.kube.client import GROUP, PLURAL, VERSION
from handler.kube.informer import ListCall, ListOptions


def cluster_vmis(custom: client.CustomObjectsApi) -> ListCall:
    def call(**options: Unpack[ListOptions]) -> object:
        return custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **options)

    return call


def all_pods(core: client.CoreV1Api) -> ListCall:
    def call(**options: Unpack[ListOptions]) -> object:
        return core.list_pod_for_all_namespaces(**options)

    return call
