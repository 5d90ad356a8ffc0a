"""Errors that know their meaning on the wire (no I/O).

How the server turns them into bytes is tested where it happens: refusals in
test_upgrade.py, close codes in test_connection.py, error replies in
test_presence.py.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from wsproto.frame_protocol import CloseReason

from wspractice.errors import (
    CloseError,
    HandshakeError,
    MessageError,
    MessageTooBig,
    PolicyViolation,
    UnsupportedData,
)


def test_a_handshake_error_carries_its_status_reason_and_headers() -> None:
    error = HandshakeError(
        HTTPStatus.UPGRADE_REQUIRED, "speak 13", (("Sec-WebSocket-Version", "13"),)
    )
    assert (error.status, error.reason) == (HTTPStatus.UPGRADE_REQUIRED, "speak 13")
    assert error.headers == (("Sec-WebSocket-Version", "13"),)
    assert str(error) == "426 Upgrade Required: speak 13"


def test_a_message_error_carries_its_reason() -> None:
    assert MessageError("not JSON").reason == "not JSON"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CloseError("a bug"), CloseReason.INTERNAL_ERROR),
        (UnsupportedData("binary"), CloseReason.UNSUPPORTED_DATA),
        (PolicyViolation("flood"), CloseReason.POLICY_VIOLATION),
        (MessageTooBig("large"), CloseReason.MESSAGE_TOO_BIG),
    ],
)
def test_each_close_error_has_its_close_code(error: CloseError, code: int) -> None:
    assert error.code == code
    assert str(error) == f"{code} {CloseReason(code).name}: {error.reason}"


def test_a_close_error_may_name_another_code() -> None:
    error = CloseError("going away", CloseReason.GOING_AWAY)
    assert error.code == CloseReason.GOING_AWAY
    assert CloseError("default").code == CloseReason.INTERNAL_ERROR
