"""Entity-group transactions of the task write path, with the ``$batch`` body built by hand.

azure-core builds a ``$batch`` body with Python's ``email`` package and parses the reply the same
way: about 0.75 ms of CPU per operation, five times what storage spends on it (docs/benchmarks.md, "Where the
write time goes"), so one process could not write one partition faster than ~1,100 rows/s. The
write path sends two kinds of operation -- insert, and replace under an ETag -- bulk writes
(listings, rejected events) a third, insert-or-replace, and job summaries a fourth, delete under an
ETag; so here the body is string joins and the
reply a split on its boundary. The request still goes through the table
client's own pipeline (authentication, retries, logging), entity values are typed by the SDK's
own serializer, and a failed operation raises as ``TableClient.submit_transaction`` does: an
``HttpResponseError`` with the operation's status (409, 412, 404), nothing written.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import TableTransactionError
from azure.data.tables._serialize import _add_entity_properties  # the SDK's Edm typing of values
from azure.data.tables.aio import TableClient

_CHANGESET_BOUNDARY = re.compile(r"boundary=(changesetresponse_[^\s;]+)")
_STATUS = re.compile(r"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_ETAG = re.compile(r"^ETag: *(.+?)\r?$", re.MULTILINE | re.IGNORECASE)
_ERROR_CODE = re.compile(r'"code" *: *"([^"]+)"')


async def submit(table: TableClient, operations: Sequence[tuple], **kwargs: Any) -> list[dict[str, str | None]]:
    """Commit ``("create", entity)``, ``("update", entity, {"etag": ...})`` (replace, If-Match),
    ``("upsert", entity)`` (insert or replace) and ``("delete", keys, {"etag": ...})`` (If-Match)
    operations of one partition atomically; each operation's new ETag, in order."""
    base = f"{table.scheme}://{table._primary_hostname}"
    changeset, batch = f"changeset_{uuid.uuid4()}", f"batch_{uuid.uuid4()}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
    for index, operation in enumerate(operations):
        kind, entity = operation[0], operation[1]
        body = json.dumps(_add_entity_properties(entity), separators=(",", ":"))  # ASCII: length in bytes
        keys = f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
        if kind == "create":
            target, condition = f"POST {base}/{table.table_name}", ""
        elif kind in ("update", "upsert"):  # a PUT without If-Match inserts or replaces
            target = f"PUT {base}/{table.table_name}({keys})"
            condition = f"If-Match: {operation[2]['etag']}\r\n" if kind == "update" else ""
        elif kind == "delete":  # under the row's ETag; a delete has no body
            target, condition, body = (
                f"DELETE {base}/{table.table_name}({keys})",
                f"If-Match: {operation[2]['etag']}\r\n",
                "",
            )
        else:
            raise ValueError(f"operation {kind!r} is not one this path sends (create, update, upsert, delete)")
        parts.append(
            f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {index}\r\n\r\n{target} HTTP/1.1\r\nContent-Type: application/json\r\n"
            f"Accept: application/json;odata=minimalmetadata\r\nDataServiceVersion: 3.0\r\n"
            f"x-ms-version: {table.api_version}\r\n{condition}Content-Length: {len(body)}\r\n\r\n{body}\r\n"
        )
    parts.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n")
    request = HttpRequest(
        "POST",
        f"{base}/$batch",
        content="".join(parts).encode(),
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={batch}",
            "Accept": "application/json",
        },
    )
    response = await table._client.send_request(request, stream=True, **kwargs)  # the reply is read here, not decoded
    await response.read()
    if response.status_code != 202:  # the whole request refused (auth, size, a missing table)
        raise HttpResponseError(response=response)
    return _results(response.text(), len(operations))


def _results(reply: str, operations: int) -> list[dict[str, str | None]]:
    boundary = _CHANGESET_BOUNDARY.search(reply)
    if boundary is None:
        raise HttpResponseError(message=f"a $batch reply without a changeset: {reply[:200]!r}")
    results = []
    for part in reply.split(f"--{boundary.group(1)}")[1:-1]:
        status = _STATUS.search(part)
        if status is None:
            raise HttpResponseError(message=f"a $batch reply part without a status: {part[:200]!r}")
        code = int(status.group(1))
        if not 200 <= code < 300:  # storage answers a failed transaction with that one operation's error
            error_code = _ERROR_CODE.search(part)
            failure = TableTransactionError(
                message=f"transaction failed: HTTP {code} {error_code.group(1) if error_code else ''}".strip()
            )
            failure.status_code = code
            raise failure
        etag = _ETAG.search(part)
        results.append({"etag": etag.group(1) if etag else None})
    if len(results) != operations:
        raise HttpResponseError(message=f"a $batch reply with {len(results)} results for {operations} operations")
    return results


def _key(value: str) -> str:
    """A key in an entity URL: quotes doubled (OData), then percent-encoded, as the SDK sends it."""
    return quote(value.replace("'", "''"), safe="")
