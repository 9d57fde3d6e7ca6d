"""7: fuzzed and hostile bodies. Each gets a 200 (stored or quarantined) or a documented 4xx;
the server never prints a traceback and never drops a connection."""

import http.client
import json
import random

import pytest
from conftest import SAMPLE_NAMES, sample_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EDGE_CASES = [
    b"[" * 5000 + b"]" * 5000,
    b'{"event": "newResult", "caseId": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"event": "newResult", "caseId": NaN}',
    b'{"event": "x", "n": 1e400}',
    b'{"event": "x", "n": -Infinity}',
    b'{"event": "newResult", "event": "caseClosed"}',
    sample_bytes("case-closed").replace(b'"agentId": 1', b'"agentId": 1, "agentId": 2'),
    b'{"event": "\xff\xfe"}',
    b"\xed\xa0\x80",
    b'{"event": "x", "caseId": ' + b"9" * 30 + b"}",
    sample_bytes("new-incoming-message").replace(b'"caseId": 11111', b'"caseId": ' + b"9" * 5000),
    sample_bytes("new-incoming-message").replace(b'"own": 0', b'"own": true'),
    sample_bytes("case-closed").replace(b'"externalPersonId": false', b'"externalPersonId": true'),
    b'{"event": "\\ud800"}',
    b"\x00" * 100,
    b"",
    b"null",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def mutated(seed: int) -> bytes:
    """A sample with a few bytes flipped, cut or repeated."""
    rng = random.Random(seed)
    body = bytearray(sample_bytes(rng.choice(SAMPLE_NAMES)))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(body))
        op = rng.random()
        if op < 0.5:
            body[i] = rng.randrange(256)
        elif op < 0.75:
            del body[i : i + rng.randint(1, 8)]
        else:
            body[i:i] = body[i : i + rng.randint(1, 8)]
    return bytes(body)


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            [
                "event",
                "caseId",
                "personId",
                "own",
                "typeId",
                "timestamp",
                "oldPersonId",
                "newPersonId",
                "externalPersonId",
            ]
        ),
        json_values,
        max_size=9,
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(0, 10**6).map(mutated),
)


class Connection:
    """One kept-alive connection: a dropped connection fails the test instead of reconnecting."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, body: bytes) -> tuple[int, dict]:
        self.conn.request("POST", "/fuzz", body=body)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())


def check(status: int, answer: dict) -> None:
    assert status == 200, answer
    assert answer["ok"] is True and isinstance(answer.get("id", answer.get("quarantineId")), int)
    if answer.get("quarantined"):
        assert answer["reason"]


@pytest.mark.parametrize("body", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_are_kept(server, body):
    status, answer = Connection(server.port).post(body)
    check(status, answer)


def test_fuzzed_bodies(server):
    conn = Connection(server.port)
    seen = []

    @settings(
        max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(bodies)
    def deliver(body):
        seen.append(body)
        check(*conn.post(body))

    deliver()
    assert len(seen) >= 1000
    assert server.stop() == 0
    assert "Traceback" not in server.stderr() and "Exception" not in server.stderr()
