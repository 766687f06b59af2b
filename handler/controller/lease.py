"""Leader election on a coordination.k8s.io/v1 Lease: one controller replica acts, the others wait.

Each call of ``try_once`` reads the Lease and creates, renews or takes it over (with the
read resourceVersion, so two candidates never both win), as decided by
``handler.core.leader_lease``. A leader whose renewals fail stops leading after the renew
deadline, before any standby can take the lease over.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.leader_lease import LeaseMove, LeaseRecord, LeaseTiming, next_move, still_leading
from handler.kube.client import raw

log = structlog.get_logger("qat_handler.lease")
DEFAULT_TIMING = LeaseTiming()


def default_identity() -> str:
    """``$POD_NAME`` (downward API), else the hostname plus a random suffix: two replicas never share one."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:10]}"


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming = DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.lease_namespace, self.name, self.identity = namespace, name, identity
        self.timing = timing
        self._clock = clock
        self._seen: tuple[LeaseRecord | None, float] = (None, clock())
        self._renewed_at: float | None = None
        self.round_failed = False
        """The last round could not read or write the Lease (the API server did not answer, or refused)."""

    def since_renewal(self) -> float | None:
        """Seconds since this replica last created, renewed or took the Lease; None while it does not hold it."""
        return None if self._renewed_at is None else self._clock() - self._renewed_at

    @property
    def leading(self) -> bool:
        return self._renewed_at is not None and still_leading(self._renewed_at, self._clock(), self.timing)

    def try_once(self) -> bool:
        """One round: read, then create, renew or take the Lease when due. True while this replica leads."""
        self.round_failed = True
        try:
            self._attempt()
            self.round_failed = False
        except ApiException as error:
            log.warning("lease round failed", lease=f"{self.lease_namespace}/{self.name}", status=error.status)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("lease round failed", lease=f"{self.lease_namespace}/{self.name}", error=str(error)[:200])
        if self._renewed_at is not None and not self.leading:
            log.error("lost the lease: renewals failed for the renew deadline", identity=self.identity)
            self._renewed_at = None
        return self.leading

    def release(self) -> None:
        """Give the lease up on a clean stop, so a standby takes over at once instead of after it expires."""
        if not self.leading:
            return
        try:
            current = self._read()
            if current is not None and _record(current).holder == self.identity:
                current["spec"]["holderIdentity"] = ""
                released: Any = current  # the client builds its model from this camelCase dict
                self._api.replace_namespaced_lease(self.name, self.lease_namespace, released)
                log.info("lease released", identity=self.identity)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("could not release the lease", error=str(error)[:200])
        self._renewed_at = None

    def _attempt(self) -> None:
        current = self._read()
        record = _record(current) if current is not None else None
        now = self._clock()
        if record != self._seen[0]:
            self._seen = (record, now)
        move = next_move(self.identity, record, self._seen[1], now)
        if move is LeaseMove.WAIT:
            return
        # Annotated Any: the client builds its V1Lease model from this camelCase dict.
        body: Any = {**(current or {}), "spec": self._spec(record, move)}
        try:
            if current is None:
                body.update(apiVersion="coordination.k8s.io/v1", kind="Lease", metadata={"name": self.name})
                self._api.create_namespaced_lease(self.lease_namespace, body)
            else:
                self._api.replace_namespaced_lease(self.name, self.lease_namespace, body)
        except ApiException as error:
            if error.status == 409:  # someone else moved first
                return
            raise
        if self._renewed_at is None:
            log.info("leading", identity=self.identity, lease=f"{self.lease_namespace}/{self.name}", move=str(move))
        self._renewed_at = now

    def _spec(self, record: LeaseRecord | None, move: LeaseMove) -> dict[str, Any]:
        now = micro_time()
        renew = move is LeaseMove.RENEW and record is not None
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.duration_seconds,
            "acquireTime": self._acquired if renew else now,
            "renewTime": now,
            "leaseTransitions": (record.transitions if record else 0) + (0 if renew or record is None else 1),
        }

    @property
    def _acquired(self) -> str:
        current = self._seen[0]
        return current.acquire_time if current is not None else micro_time()

    def _read(self) -> dict[str, Any] | None:
        try:
            return raw(self._api.read_namespaced_lease(self.name, self.lease_namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise


def _record(lease: dict[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=str(spec.get("renewTime") or ""),
        acquire_time=str(spec.get("acquireTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
    )
