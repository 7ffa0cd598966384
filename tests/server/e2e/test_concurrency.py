"""32 concurrent clients, each on its own channel, are all served."""
from concurrent.futures import ThreadPoolExecutor

import grpc

import harness


def test_32_concurrent_clients(server):
    def one(i):
        with grpc.insecure_channel(server.address) as ch:
            stub = harness.pb2_grpc.GenerationStub(ch)
            data, mime, fin = harness.client.generate(
                stub, harness.request(prompt=f"prompt number {i}", seed=i,
                                      width=64 + 16 * (i % 2)), timeout=180)
            im = harness.decode_image(data)
            return im.size, fin.seed

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    assert len(results) == 32
    assert sorted(seed for _, seed in results) == list(range(32))
    assert {size for size, _ in results} == {(64, 64), (80, 64)}
