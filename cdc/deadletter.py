"""Dead-letter records: what is published about a change that could not be.

Used by the pipeline's `skip` / `dead_letter` error policies.
"""

from __future__ import annotations

import traceback
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from .errors import SinkError

# Broker errors that refuse one message for what it is, not because the broker
# or the connection is in trouble: only these go through skip / dead_letter.
MESSAGE_REFUSALS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.POLICY_VIOLATION,
})


def dead_letter_record(
    *,
    pipeline: str,
    event_id: str,
    stage: str,
    error_type: str,
    error_message: str,
    traceback: str | None,
    mapper: str | None = None,
    change: Any = None,
    topic: str | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object published to the dead-letter topic.

    `stage` is where it failed: "mapper" (then `mapper` names it), "format"
    (rendering the change or an event's value) or "broker" (the broker
    refused the message: `error_type` is the broker's error name, e.g.
    MSG_SIZE_TOO_LARGE). `change` is the original change in the `json`
    format; for a small message the broker refused, the record carries the
    refused `message` (key and value) instead. `topic` is where the event
    was going.
    """
    record: dict[str, Any] = {
        "pipeline": pipeline,
        "event_id": event_id,
        "stage": stage,
        "mapper": mapper,
        "error_type": error_type,
        "error_message": error_message,
        "traceback": traceback,
        "topic": topic,
        "change": change,
    }
    if message is not None:
        record["message"] = message
    return record


def format_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def refusal_code(error: SinkError) -> int | None:
    """The broker error code behind a SinkError from produce(), if it refuses the message."""
    cause = error.__cause__
    if isinstance(cause, KafkaException) and cause.args and isinstance(cause.args[0], KafkaError):
        code: int = cause.args[0].code()
        return code if code in MESSAGE_REFUSALS else None
    return None


def header_text(msg: Message, name: str) -> str | None:
    headers: Any = msg.headers() or ()
    for key, value in headers:
        if key == name and value is not None:
            return bytes(value).decode(errors="replace")
    return None


def plain(value: Any) -> Any:
    """JSON-safe form of a row for the fallback rendering."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
