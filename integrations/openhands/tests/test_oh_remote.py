"""The light core's remote scorer guards an OpenHands agent: `RemoteMemRM` against a fake vLLM.

The fake server is the core's own (tests/test_remote.py, vLLM's wire format over
httpx.MockTransport), so this checks the wiring, not the client.
"""

from __future__ import annotations

import httpx
from memguard import Guard, RemoteMemRM
from memguard.testing.contract import RecordingSink
from tests.test_remote import URL, FakeVLLM

from oh_doubles import agent_llm, make_agent, run, summarizing
from openhands_memguard import guard_agent


def test_a_remote_memrm_scores_the_reviews():
    fake = FakeVLLM()
    transport = httpx.MockTransport(fake)
    scorer = RemoteMemRM(URL, transport=transport, async_transport=transport, backoff=0.0)
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False)
    run(guard_agent(make_agent(agent_llm(), summarizing()), guard))
    assert sink.reviews
    assert all(d.p_harmful is not None and 0.0 < d.p_harmful < 1.0 for d in sink.reviews)
    assert fake.calls["/generative_scoring"] >= len(sink.reviews)
    assert all(d.scorer is not None and d.scorer.adapter for d in sink.reviews)
