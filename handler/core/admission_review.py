"""AdmissionReview v1 on the wire: the request in, the response out.

A denial carries a metav1.Status with code 422, reason Invalid and one StatusCause per refused
field, which kube-apiserver hands back to the client as it is, prefixed with the webhook's
name (so ``kubectl apply`` prints the message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handler.core.admission import Verdict, VmiRequest

REVIEW_API_VERSION = "admission.k8s.io/v1"


class BadReview(ValueError):
    """The body is not an AdmissionReview v1 request; answered with HTTP 400."""


def read_review(body: Any) -> tuple[str, VmiRequest]:
    """The request's uid and what ``decide`` needs, or BadReview naming what is wrong."""
    if not isinstance(body, Mapping) or body.get("kind") != "AdmissionReview":
        raise BadReview("the body is not an AdmissionReview")
    if body.get("apiVersion") != REVIEW_API_VERSION:
        raise BadReview(f"apiVersion is {body.get('apiVersion')!r}; only {REVIEW_API_VERSION} is served")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise BadReview("request.uid is missing")
    user = request.get("userInfo")
    username = user.get("username", "") if isinstance(user, Mapping) else ""
    return request["uid"], VmiRequest(
        operation=str(request.get("operation", "")),
        namespace=str(request.get("namespace") or ""),
        uid=request["uid"],
        username=str(username),
        obj=_object(request.get("object")),
        old=_object(request.get("oldObject")),
        name=str(request.get("name") or ""),
    )


def _object(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def review_response(uid: str, verdict: Verdict, name: str = "") -> dict[str, Any]:
    """``name`` lets clients name the object: kubectl prints 'The VirtualMachineInstance "x" is invalid'."""
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": verdict.message,
            "details": {
                "name": name,
                "group": "kubevirt.io",
                "kind": "VirtualMachineInstance",
                "causes": [
                    {"type": "FieldValueInvalid", "field": cause.field, "message": cause.message}
                    for cause in verdict.causes
                ],
            },
        }
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}
