"""LookupResponse / StoreResponse over gRPC: similarity hits, tenant isolation, bad input."""

from __future__ import annotations

import grpc
import pytest

from semroute.v1 import router_pb2 as pb

ANSWER = "We are open 9am-6pm, Monday to Saturday."


def test_similar_prompt_gets_the_stored_answer_same_tenant_only(stub) -> None:  # type: ignore[no-untyped-def]
    stored = stub.StoreResponse(
        pb.StoreResponseRequest(
            tenant="acme",
            model="mistral-small-3.2",
            prompt="What are your opening hours?",
            response=ANSWER,
        ),
        timeout=10,
    )
    assert stored.stored and stored.entries >= 1
    hit = stub.LookupResponse(
        pb.LookupResponseRequest(
            tenant="acme", model="mistral-small-3.2", prompt="what are your opening hours"
        ),
        timeout=10,
    )
    assert hit.hit and hit.response == ANSWER and hit.similarity > 0.92 and hit.age_s >= 0
    for tenant, model in (("globex", "mistral-small-3.2"), ("acme", "gpt-5.5")):
        miss = stub.LookupResponse(
            pb.LookupResponseRequest(
                tenant=tenant, model=model, prompt="What are your opening hours?"
            ),
            timeout=10,
        )
        assert not miss.hit and miss.response == ""
    unrelated = stub.LookupResponse(
        pb.LookupResponseRequest(
            tenant="acme", model="mistral-small-3.2", prompt="how do I reset my password?"
        ),
        timeout=10,
    )
    assert not unrelated.hit
    strict = stub.LookupResponse(
        pb.LookupResponseRequest(
            tenant="acme",
            model="mistral-small-3.2",
            prompt="what are your opening hours",
            min_similarity=0.99999,
        ),
        timeout=10,
    )
    assert not strict.hit or strict.similarity >= 0.99999


def test_chat_context_must_match(stub) -> None:  # type: ignore[no-untyped-def]
    ctx_a = [
        pb.ChatMessage(role="user", content="I'm writing Rust."),
        pb.ChatMessage(role="assistant", content="Great."),
    ]
    ctx_b = [
        pb.ChatMessage(role="user", content="I'm writing Haskell."),
        pb.ChatMessage(role="assistant", content="Great."),
    ]
    last = pb.ChatMessage(role="user", content="how do I read a file line by line?")
    stub.StoreResponse(
        pb.StoreResponseRequest(
            tenant="t", model="gpt-5.5", messages=[*ctx_a, last], response="use BufReader::lines"
        ),
        timeout=10,
    )
    same = stub.LookupResponse(
        pb.LookupResponseRequest(tenant="t", model="gpt-5.5", messages=[*ctx_a, last]), timeout=10
    )
    other = stub.LookupResponse(
        pb.LookupResponseRequest(tenant="t", model="gpt-5.5", messages=[*ctx_b, last]), timeout=10
    )
    assert same.hit and same.response == "use BufReader::lines"
    assert not other.hit


@pytest.mark.parametrize(
    ("req", "text"),
    [
        (pb.StoreResponseRequest(model="m", prompt="p", response="r"), "tenant is required"),
        (pb.StoreResponseRequest(tenant="t", prompt="p", response="r"), "model is required"),
        (pb.StoreResponseRequest(tenant="t", model="m", response="r"), "empty request"),
        (
            pb.StoreResponseRequest(tenant="t", model="m", prompt="p", response="x" * 300_000),
            "max_response_bytes",
        ),
        (
            pb.StoreResponseRequest(tenant="t", model="m", prompt="p", response="r", ttl_s=-1),
            "ttl_s",
        ),
        (
            pb.StoreResponseRequest(
                tenant="t",
                model="m",
                response="r",
                messages=[pb.ChatMessage(role="assistant", content="hi")],
            ),
            "last message must be the user turn",
        ),
    ],
)
def test_bad_store_requests(stub, req, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        stub.StoreResponse(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in e.value.details()


def test_lookup_without_tenant_is_refused(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        stub.LookupResponse(pb.LookupResponseRequest(model="m", prompt="p"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
