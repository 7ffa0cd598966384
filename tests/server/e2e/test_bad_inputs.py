"""Every bad-input case returns its status, with the field and its limit in the message."""
import grpc
import pytest

import harness
from harness import pb2


def status_of(stub, req, timeout=30):
    try:
        for _ in stub.Generate(req, timeout=timeout):
            pass
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


INVALID = [
    (dict(width=100), "width must be a multiple of 16"),
    (dict(height=72), "height must be a multiple of 16"),
    (dict(width=-64), "width must be in [64, 1024]"),
    (dict(width=0), "width must be in [64, 1024]"),
    (dict(width=2048), "width must be in [64, 1024]"),
    (dict(height=4096), "height must be in [64, 1024]"),
    (dict(width=1024, height=1024, frames=5), "frames must be 1"),
    (dict(frames=-1), "frames must be 1"),
    (dict(steps=101), "steps must be in [1, 100]"),
    (dict(steps=-1), "steps must be in [1, 100]"),
    (dict(guidance=-0.5), "guidance must be"),
    (dict(guidance=float("inf")), "guidance must be"),
    (dict(guidance=float("nan")), "guidance must be"),
    (dict(prompt="word " * 200), "prompt is too long"),
    (dict(prompt="x" * 5000), "prompt is too long: 5000 bytes"),
    (dict(negative_prompt="word " * 200), "negative_prompt is too long"),
    (dict(attention=pb2.AttentionSettings(mode=17)), "attention.mode must be one of"),
    (dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, group=[4])),
     "attention.group must have 2 entries"),
    (dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, group=[0, 4])),
     "attention.group[0] must be in [1, 4]"),
    (dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, group=[4, 99])),
     "attention.group[1] must be in [1, 4]"),
    (dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, radius=-2)),
     "attention.radius must be in [0, 64]"),
    (dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, full_steps=3)),
     "attention.full_steps must be in [0, 2]"),
    (dict(format=pb2.OUTPUT_FORMAT_MP4), "format MP4 is for video models"),
    (dict(format=9), "format must be one of"),
    (dict(priority=1000), "priority must be in [-100, 100]"),
]


@pytest.mark.parametrize("fields,message", INVALID, ids=[m for _, m in INVALID])
def test_invalid_argument(server, fields, message):
    code, details = status_of(server.stub, harness.request(**fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert message in details, details


def test_unknown_model_not_found(server):
    code, details = status_of(server.stub, harness.request(model="flux-huge"))
    assert code == grpc.StatusCode.NOT_FOUND and "flux-huge" in details


def test_deadline_already_passed(server):
    code, _ = status_of(server.stub, harness.request(), timeout=0.0001)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancel_job_bad_ids(server):
    for job_id, want in (("", grpc.StatusCode.INVALID_ARGUMENT),
                         ("x" * 500, grpc.StatusCode.INVALID_ARGUMENT),
                         ("ffffffffffffffff", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as err:
            server.stub.CancelJob(pb2.CancelJobRequest(job_id=job_id), timeout=10)
        assert err.value.code() == want


def test_message_too_large(server):
    code, _ = status_of(server.stub, harness.request(prompt="y" * (2 << 20)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_requests_counted_by_outcome(server):
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=5).read().decode()
    assert 'grat_requests_total{model="flux-tiny",outcome="invalid_argument"}' in text
    assert 'grat_requests_total{model="unknown",outcome="not_found"}' in text
