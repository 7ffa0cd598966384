"""grpc.health.v1 (overall and per model) and server reflection answer, as grpcurl and
Kubernetes gRPC probes use them."""
import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_health(server):
    stub = health_pb2_grpc.HealthStub(server.channel)
    for svc in ("", "flux-tiny", "grat.v1.Generation"):
        r = stub.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING, svc
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def reflect(channel, **req):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**req)]),
                                             timeout=10))
    return resp


def test_reflection_lists_and_describes(server):
    resp = reflect(server.channel, list_services="")
    names = {s.name for s in resp.list_services_response.service}
    assert {"grat.v1.Generation", "grpc.health.v1.Health"} <= names, names

    resp = reflect(server.channel, file_containing_symbol="grat.v1.Generation")
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in resp.file_descriptor_response.file_descriptor_proto]
    gen = next(f for f in files if f.name == "grat/v1/generation.proto")
    (svc,) = gen.service
    assert {m.name for m in svc.method} == {"Generate", "CancelJob", "ListModels"}
    msgs = {m.name: m for m in gen.message_type}
    fields = {f.name for f in msgs["GenerateRequest"].field}
    assert {"model", "prompt", "width", "height", "seed", "attention", "priority"} <= fields
