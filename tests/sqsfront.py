"""The AWS front server (:mod:`awsfront`) with SQS errors written as SQS writes them.

SQS speaks AWS JSON 1.0 with "query compatibility": an error is a JSON body whose ``__type`` is
the JSON shape name (``com.amazonaws.sqs#QueueDoesNotExist``, or the IAM layer's
``com.amazon.coral.service#AccessDeniedException``) plus an ``x-amzn-query-error`` header that
carries the code of the older query protocol (``AWS.SimpleQueueService.NonExistentQueue;Sender``),
which botocore reports as the error code. Faults are injected per operation, e.g.
``front.fail("sqs:ReceiveMessage", 403, "AccessDenied")``; every other request goes to moto.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from awsfront import AwsFront, Fault

# query code -> JSON shape name, as SQS answers them
SQS_ERRORS = {
    "AccessDenied": "com.amazon.coral.service#AccessDeniedException",
    "RequestThrottled": "com.amazonaws.sqs#RequestThrottled",
    "AWS.SimpleQueueService.NonExistentQueue": "com.amazonaws.sqs#QueueDoesNotExist",
    "KMS.AccessDeniedException": "com.amazonaws.sqs#KmsAccessDenied",
    "InternalError": "com.amazonaws.sqs#InternalError",
}


class SqsFront(AwsFront):
    def _error(
        self, req: BaseHTTPRequestHandler, operation: str, fault: Fault, headers: dict[str, str]
    ) -> None:
        if not operation.startswith("sqs:"):
            super()._error(req, operation, fault, headers)
            return
        shape = SQS_ERRORS.get(fault.code, f"com.amazonaws.sqs#{fault.code}")
        kind = "Receiver" if fault.status >= 500 else "Sender"
        self._send(
            req,
            fault.status,
            json.dumps({"__type": shape, "message": fault.message}).encode(),
            {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-query-error": f"{fault.code};{kind}",
            },
        )
