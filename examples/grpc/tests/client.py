"""A grpcio client against the grpc example's gRPC listener (run by `tests/python.rs`).

    client.py GRPC_ADDR DASHBOARD_ADDR STUBS_DIR

STUBS_DIR holds the stubs grpc_tools.protoc made from `proto/greeter.proto` and
`rayai-http/proto/rayai/v1/agents.proto`. Each check prints one line (`ok` or `FAIL`, with why);
the exit code is 1 when any failed.
"""

import json
import queue
import re
import sys
import time
import traceback
import urllib.request

import grpc

GRPC_ADDR, DASHBOARD_ADDR, STUBS = sys.argv[1:4]
sys.path.insert(0, STUBS)

import greeter_pb2  # noqa: E402
import greeter_pb2_grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402
from rayai.v1 import agents_pb2, agents_pb2_grpc  # noqa: E402

# The timeout of every call that is not about timeouts.
TIMEOUT = 5.0
GREETER = (("application", "greeter"),)
SLEEPER = (("application", "sleeper"),)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

channel = grpc.insecure_channel(GRPC_ADDR)
greeter = greeter_pb2_grpc.GreeterStub(channel)
sleeper = greeter_pb2_grpc.SleeperStub(channel)
agents = agents_pb2_grpc.AgentsStub(channel)


def failure(call, code, what):
    """The RpcError `call()` raises, asserted to carry `code`."""
    try:
        answer = call()
    except grpc.RpcError as e:
        assert (
            e.code() == code
        ), f"{what}: expected {code.name}, got {e.code().name}: {e.details()!r}"
        return e
    raise AssertionError(f"{what}: expected {code.name}, got an answer: {answer!r}")


def metrics():
    """The dashboard's /metrics text."""
    with urllib.request.urlopen(f"http://{DASHBOARD_ADDR}/metrics", timeout=2) as resp:
        assert resp.status == 200, f"/metrics answered {resp.status}"
        return resp.read().decode()


def samples(text, name):
    """The samples of the metric `name` in `text`: (labels dict, value) pairs."""
    found = []
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            found.append((labels, float(m.group(2))))
    return found


def request_id(call):
    return dict(call.initial_metadata()).get("x-request-id")


def check_unary():
    reply, call = greeter.SayHello.with_call(
        greeter_pb2.HelloRequest(name="python"), metadata=GREETER, timeout=TIMEOUT
    )
    assert reply.message == "Hello, python!", f"message: {reply.message!r}"
    assert re.fullmatch(r"greeter#[01]", reply.replica), f"replica: {reply.replica!r}"
    assert call.code() == grpc.StatusCode.OK, call.code()
    generated = request_id(call)
    assert generated and UUID.match(generated), f"a generated x-request-id (a UUID): {generated!r}"
    _, call = greeter.SayHello.with_call(
        greeter_pb2.HelloRequest(name="python"),
        metadata=GREETER + (("x-request-id", "py-req-42"),),
        timeout=TIMEOUT,
    )
    echoed = request_id(call)
    assert echoed == "py-req-42", f"x-request-id echoed: {echoed!r}"
    replicas = set()
    for i in range(20):
        replicas.add(
            greeter.SayHello(
                greeter_pb2.HelloRequest(name=f"n{i}"), metadata=GREETER, timeout=TIMEOUT
            ).replica
        )
    assert replicas == {
        "greeter#0",
        "greeter#1",
    }, f"both replicas answer 20 calls: {sorted(replicas)}"
    return (
        f"Hello, python! from {reply.replica}; x-request-id generated {generated}, echoed; "
        f"replicas {sorted(replicas)}"
    )


def check_stream():
    replies = list(
        greeter.SayHelloStream(
            greeter_pb2.HelloRequest(name="py", count=3, delay_ms=10),
            metadata=GREETER,
            timeout=TIMEOUT,
        )
    )
    messages = [r.message for r in replies]
    assert messages == ["Hello, py! (1)", "Hello, py! (2)", "Hello, py! (3)"], f"stream: {messages}"
    assert (
        len({r.replica for r in replies}) == 1
    ), f"one replica streams: {[r.replica for r in replies]}"
    return f"{len(messages)} messages in order"


def check_client_streaming():
    names = ("a", "b", "c")
    reply = greeter.SayHelloToAll(
        iter([greeter_pb2.HelloRequest(name=n) for n in names]), metadata=GREETER, timeout=TIMEOUT
    )
    assert reply.message == "Hello, a, b and c!", f"message: {reply.message!r}"
    assert re.fullmatch(r"greeter#[01]", reply.replica), f"replica: {reply.replica!r}"
    none = greeter.SayHelloToAll(iter([]), metadata=GREETER, timeout=TIMEOUT)
    assert none.message == "Hello, world!", f"no requests: {none.message!r}"
    long = failure(
        lambda: greeter.SayHelloToAll(
            iter([greeter_pb2.HelloRequest(name="a"), greeter_pb2.HelloRequest(name="x" * 1001)]),
            metadata=GREETER,
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "a name past 1000 bytes",
    )
    return f"{reply.message!r} from {reply.replica}; none: {none.message!r}; {long.details()!r}"


def open_chat():
    """A Greeter Chat call and the queue that feeds it (None ends the requests)."""
    requests = queue.Queue()
    replies = greeter.Chat(iter(requests.get, None), metadata=GREETER, timeout=TIMEOUT)
    return requests, replies


def check_bidi():
    # Each request is sent only once the previous one's reply is in: nothing between the client
    # and the replica may wait for the end of the requests.
    requests, replies = open_chat()
    got = []
    for name in ("a", "b", "c"):
        requests.put(greeter_pb2.HelloRequest(name=name))
        reply = next(replies)
        assert reply.message == f"Hello, {name}!", f"the reply to {name!r}: {reply.message!r}"
        got.append(reply)
    requests.put(None)
    rest = list(replies)
    assert rest == [], f"nothing after the requests end: {rest}"
    assert replies.code() == grpc.StatusCode.OK, replies.code()
    replicas = {r.replica for r in got}
    assert len(replicas) == 1, f"one replica answers: {sorted(replicas)}"
    # A bad request mid-stream ends it with its status.
    requests, replies = open_chat()
    requests.put(greeter_pb2.HelloRequest(name="a"))
    first = next(replies)
    assert first.message == "Hello, a!", first.message
    requests.put(greeter_pb2.HelloRequest(name="x" * 1001))
    bad = failure(
        lambda: next(replies), grpc.StatusCode.INVALID_ARGUMENT, "a name past 1000 bytes mid-chat"
    )
    requests.put(None)
    return (
        f"3 rounds, each reply before the next request, from {replicas.pop()}; then OK; "
        f"a bad name: INVALID_ARGUMENT {bad.details()!r}"
    )


def check_deadline():
    started = time.monotonic()
    e = failure(
        lambda: sleeper.Sleep(greeter_pb2.SleepRequest(ms=2000), metadata=SLEEPER, timeout=0.3),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "Sleep 2000 ms with a 0.3 s deadline",
    )
    took = time.monotonic() - started
    assert took < 1.0, f"the deadline ends the call in time: {took:.2f} s"
    # The expired call must not hold the sleeper's only slot for the rest of its 2 s.
    started = time.monotonic()
    reply = sleeper.Sleep(greeter_pb2.SleepRequest(ms=0), metadata=SLEEPER, timeout=TIMEOUT)
    free = time.monotonic() - started
    assert reply.slept_ms == 0, reply
    assert free < 0.5, f"the sleeper is free after the deadline: the next call took {free:.2f} s"
    # grpcio enforces the deadline too (its details are its own): what the server recorded, for
    # the record (DEADLINE_EXCEEDED, or CANCELLED when the client's cancellation won the race).
    recorded = {
        labels["status_code"]: v
        for labels, v in samples(metrics(), "ray_serve_num_grpc_requests_total")
        if labels.get("method") == "/greeter.v1.Sleeper/Sleep"
    }
    return (
        f"DEADLINE_EXCEEDED after {took:.2f} s ({e.details()!r}); the next Sleep took "
        f"{free:.2f} s; the server's Sleep counts by status_code: {recorded}"
    )


def cancelled_count(text, method):
    """How many calls to `method` the server counted CANCELLED."""
    return sum(
        v
        for labels, v in samples(text, "ray_serve_num_grpc_requests_total")
        if labels.get("method") == method and labels.get("status_code") == "1"
    )


def processing(text, application):
    """The calls `application`'s replicas hold now."""
    return sum(
        v
        for labels, v in samples(text, "ray_serve_replica_processing_queries")
        if labels.get("application") == application
    )


def await_cancelled(method, before):
    """Waits (at most 5 s) until /metrics has no ongoing call, no greeter replica busy, and one
    more CANCELLED call to `method` than `before`; the count and how long it took."""
    cancelled_at = time.monotonic()
    until = cancelled_at + 5
    while True:
        text = metrics()
        ongoing = [v for _, v in samples(text, "ray_serve_num_ongoing_grpc_requests")]
        busy = processing(text, "greeter")
        cancelled = cancelled_count(text, method)
        if ongoing == [0.0] and busy == 0 and cancelled > before:
            return cancelled, time.monotonic() - cancelled_at
        assert time.monotonic() < until, (
            f"within 5 s of cancel(): ray_serve_num_ongoing_grpc_requests {ongoing} (want [0]), "
            f"greeter's ray_serve_replica_processing_queries {busy:g} (want 0), "
            f'{method} status_code="1" count {cancelled:g} (want more than {before:g}); the gRPC '
            "metrics:\n"
            + "\n".join(
                line for line in text.splitlines() if "grpc" in line and not line.startswith("#")
            )
        )
        time.sleep(0.1)


def check_cancellation():
    method = "/greeter.v1.Greeter/SayHelloStream"
    before = cancelled_count(metrics(), method)
    stream = greeter.SayHelloStream(
        greeter_pb2.HelloRequest(name="cancel", count=100, delay_ms=100),
        metadata=GREETER,
        timeout=30,
    )
    first = next(stream)
    assert first.message == "Hello, cancel! (1)", first.message
    stream.cancel()
    failure(lambda: next(stream), grpc.StatusCode.CANCELLED, "the cancelled stream, read on")
    cancelled, waited = await_cancelled(method, before)
    return (
        f"cancelled after 1 message; /metrics: ongoing 0, CANCELLED {before:g} -> {cancelled:g} "
        f"(after {waited:.2f} s)"
    )


def check_bidi_cancellation():
    # Cancelled with its requests still open: the replica's slot is free at once.
    method = "/greeter.v1.Greeter/Chat"
    before = cancelled_count(metrics(), method)
    requests, replies = open_chat()
    requests.put(greeter_pb2.HelloRequest(name="cancel"))
    first = next(replies)
    assert first.message == "Hello, cancel!", first.message
    busy = processing(metrics(), "greeter")
    assert busy == 1, f"the open chat holds one greeter slot: {busy:g}"
    replies.cancel()
    failure(lambda: next(replies), grpc.StatusCode.CANCELLED, "the cancelled chat, read on")
    requests.put(None)
    cancelled, waited = await_cancelled(method, before)
    return (
        f"cancelled after 1 round, requests open; /metrics: ongoing 0, greeter slots 0, "
        f"CANCELLED {before:g} -> {cancelled:g} (after {waited:.2f} s)"
    )


def check_backpressure():
    started = time.monotonic()
    futures = [
        sleeper.Sleep.future(greeter_pb2.SleepRequest(ms=500), metadata=SLEEPER, timeout=TIMEOUT)
        for _ in range(4)
    ]
    outcomes = []
    for f in futures:
        try:
            outcomes.append((grpc.StatusCode.OK, f.result(timeout=TIMEOUT).slept_ms))
        except grpc.RpcError as e:
            outcomes.append((e.code(), e.details()))
    took = time.monotonic() - started
    codes = [c.name for c, _ in outcomes]
    assert all(
        c in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED) for c, _ in outcomes
    ), outcomes
    refused = [d for c, d in outcomes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert refused, f"at least one RESOURCE_EXHAUSTED: {outcomes}"
    assert all("backpressure" in d for d in refused), f"the refusals name backpressure: {refused}"
    assert grpc.StatusCode.OK in [c for c, _ in outcomes], f"at least one success: {outcomes}"
    assert took < 3.0, f"all 4 done in {took:.2f} s"
    return f"{codes} in {took:.2f} s ({refused[0]!r})"


def check_routing():
    hello = greeter_pb2.HelloRequest(name="x")
    unknown = failure(
        lambda: greeter.SayHello(hello, metadata=(("application", "nope"),), timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "application: nope",
    ).details()
    assert (
        unknown == "Application \"nope\" not found. Available applications: ['greeter', 'sleeper']"
    ), unknown
    missing = failure(
        lambda: greeter.SayHello(hello, timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "no application metadata",
    ).details()
    assert (
        "'greeter'" in missing and "'sleeper'" in missing
    ), f"the applications are listed: {missing!r}"
    return f"unknown: {unknown!r}; missing: {missing!r}"


def chat(agent, data=None, **kw):
    data_json = data if isinstance(data, str) else json.dumps(data if data is not None else {})
    return agents_pb2.ChatRequest(agent=agent, data_json=data_json, **kw)


def check_agents():
    data = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    reply = agents.Chat(chat("echo", data), timeout=TIMEOUT)
    assert json.loads(reply.result_json) == {"echo": data}, f"echo: {reply.result_json!r}"
    assert reply.session_id == "default", f"the default session: {reply.session_id!r}"
    reply = agents.Chat(chat("echo", {}, session_id="py-session"), timeout=TIMEOUT)
    assert reply.session_id == "py-session", f"the explicit session: {reply.session_id!r}"
    assert json.loads(reply.result_json) == {"echo": {}}, reply.result_json
    reply, call = agents.Chat.with_call(
        agents_pb2.ChatRequest(agent="echo"),
        metadata=(("x-request-id", "py-chat-7"),),
        timeout=TIMEOUT,
    )
    assert json.loads(reply.result_json) == {
        "echo": {}
    }, f"empty data_json is {{}}: {reply.result_json!r}"
    assert request_id(call) == "py-chat-7", f"x-request-id echoed by Chat: {request_id(call)!r}"

    chunks = list(
        agents.ChatStream(
            chat(
                "echo",
                {"chunks": ["a", "b", "c"], "delay_ms": 10},
                stream=agents_pb2.STREAM_MODE_TEXT,
            ),
            timeout=TIMEOUT,
        )
    )
    assert [c.WhichOneof("item") for c in chunks] == ["text"] * 3, chunks
    assert [c.text for c in chunks] == ["a", "b", "c"], f"text chunks: {chunks}"

    events = [{"type": "start"}, {"type": "delta", "n": 1}, {"type": "end"}]
    chunks = list(
        agents.ChatStream(
            chat("echo", {"events": events, "delay_ms": 10}, stream=agents_pb2.STREAM_MODE_EVENTS),
            timeout=TIMEOUT,
        )
    )
    assert [c.WhichOneof("item") for c in chunks] == ["event_json"] * 3, chunks
    assert [json.loads(c.event_json) for c in chunks] == events, f"events: {chunks}"
    return (
        "Chat echo round trip, sessions default/explicit, x-request-id echoed, "
        "ChatStream TEXT a,b,c and EVENTS x3"
    )


def check_agent_errors():
    failed = failure(
        lambda: agents.Chat(chat("echo", {"fail": "boom"}), timeout=TIMEOUT),
        grpc.StatusCode.INTERNAL,
        "echo with fail",
    )
    assert "boom" in failed.details(), f"the agent's message: {failed.details()!r}"
    # A stream that fails after its items: the items, then the status.
    stream = agents.ChatStream(
        chat(
            "echo",
            {"events": [{"i": 1}], "fail": "late boom"},
            stream=agents_pb2.STREAM_MODE_EVENTS,
        ),
        timeout=TIMEOUT,
    )
    got = []
    late = failure(
        lambda: got.extend(stream), grpc.StatusCode.INTERNAL, "a stream that fails after one event"
    )
    assert [json.loads(c.event_json) for c in got] == [
        {"i": 1}
    ], f"the event before the failure: {got}"
    assert "late boom" in late.details(), late.details()

    panicked = failure(
        lambda: agents.Chat(chat("panicky", {"panic": True}), timeout=TIMEOUT),
        grpc.StatusCode.INTERNAL,
        "panicky panicking",
    )
    reply = agents.Chat(chat("panicky", {}), timeout=TIMEOUT)
    assert json.loads(reply.result_json) == {
        "ok": True
    }, f"panicky after the panic: {reply.result_json!r}"
    assert json.loads(agents.Chat(chat("plain"), timeout=TIMEOUT).result_json) == {"ok": True}

    unknown = failure(
        lambda: agents.Chat(chat("nobody"), timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "an unknown agent",
    )
    assert "nobody" in unknown.details(), unknown.details()
    bad = failure(
        lambda: agents.Chat(chat("echo", "{not json"), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "data_json that is not JSON",
    )
    return (
        f"fail: INTERNAL {failed.details()!r}; stream fails after its event; panic: INTERNAL "
        f"{panicked.details()!r}, then served; unknown: NOT_FOUND; bad JSON: INVALID_ARGUMENT "
        f"{bad.details()!r}"
    )


def check_health():
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"health: {reply}"
    return 'Check("") is SERVING'


def list_services(version):
    """The services reflection `version` (v1 or v1alpha) lists (the two protos are the same on
    the wire; grpcio-reflection has v1alpha's messages)."""
    method = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = list(method(iter([request]), timeout=TIMEOUT))
    assert len(replies) == 1, replies
    assert replies[0].WhichOneof("message_response") == "list_services_response", replies[0]
    return {s.name for s in replies[0].list_services_response.service}


def check_reflection():
    found = {}
    for version in ("v1", "v1alpha"):
        services = list_services(version)
        for name in ("rayai.v1.Agents", "grpc.health.v1.Health"):
            assert name in services, f"reflection {version} lists {name}: {sorted(services)}"
        found[version] = sorted(services)
    return f"v1 lists {found['v1']}"


CHECKS = [
    ("unary SayHello", check_unary),
    ("server streaming", check_stream),
    ("client streaming", check_client_streaming),
    ("bidirectional streaming", check_bidi),
    ("deadline", check_deadline),
    ("cancellation", check_cancellation),
    ("bidirectional cancellation", check_bidi_cancellation),
    ("backpressure", check_backpressure),
    ("application routing", check_routing),
    ("agents", check_agents),
    ("agent errors", check_agent_errors),
    ("health", check_health),
    ("reflection", check_reflection),
]


def main():
    started = time.monotonic()
    grpc.channel_ready_future(channel).result(timeout=10)
    failed = 0
    for name, check in CHECKS:
        t = time.monotonic()
        try:
            detail = check()
            print(f"ok   {name} ({time.monotonic() - t:.2f} s): {detail}")
        except Exception as e:  # noqa: BLE001 (every failure is reported, then the next check runs)
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - t:.2f} s): {e}")
            if not isinstance(e, AssertionError):
                traceback.print_exc(file=sys.stdout)
    channel.close()
    print(
        f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed in {time.monotonic() - started:.2f} s"
    )
    sys.exit(1 if failed else 0)


main()
