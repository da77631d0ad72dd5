"""The official OpenAI Python SDK against the openai example (run by `tests/python.rs`).

    client.py HTTP_PORT DASHBOARD_PORT

Each check prints one line (`ok` or `FAIL`, with why); the exit code is 1 when any failed.
"""

import json
import re
import sys
import threading
import time
import traceback
import urllib.request

import openai

HTTP_PORT, DASHBOARD_PORT = sys.argv[1:3]

# The timeout of every call (no call here takes more than a few seconds).
TIMEOUT = 10.0
client = openai.OpenAI(
    base_url=f"http://127.0.0.1:{HTTP_PORT}/v1",
    api_key="unused",
    max_retries=0,
    timeout=TIMEOUT,
)


def user(text):
    return [{"role": "user", "content": text}]


def failure(call, error_class, status, what):
    """The error `call()` raises, asserted to be an `error_class` with HTTP `status`."""
    try:
        answer = call()
    except openai.APIStatusError as e:
        assert isinstance(e, error_class) and e.status_code == status, (
            f"{what}: expected {error_class.__name__} {status}, got {type(e).__name__} "
            f"{e.status_code}: {e.body!r}"
        )
        return e
    raise AssertionError(f"{what}: expected {error_class.__name__} {status}, got {answer!r}")


def error_fields(e, what, **expected):
    """Asserts the error object of `e` (`{"error": {...}}`, which the SDK unwraps into `e.body`)
    holds a message and the `expected` fields."""
    body = e.body
    assert isinstance(body, dict), f"{what}: an error object, got {body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"{what}: a message: {body!r}"
    for key in ("type", "param", "code"):
        assert key in body, f"{what}: the error object has `{key}`: {body!r}"
    for key, value in expected.items():
        assert body.get(key) == value, f"{what}: {key} {value!r} expected: {body!r}"
    return body


def metrics():
    """The dashboard's /metrics text."""
    url = f"http://127.0.0.1:{DASHBOARD_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200, f"/metrics answered {resp.status}"
        return resp.read().decode()


def samples(text, name):
    """The samples of the metric `name` in `text`: (labels dict, value) pairs."""
    found = []
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)(?:\s+\d+)?$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            found.append((labels, float(m.group(2))))
    return found


def check_models():
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert ids == ["assistant", "lora", "sleepy", "weather"], f"the model ids, sorted: {ids}"
    for m in page.data:
        assert m.object == "model", f"{m.id}: object {m.object!r}"
        assert m.owned_by == "rayai", f"{m.id}: owned_by {m.owned_by!r}"
        assert isinstance(m.created, int), f"{m.id}: created {m.created!r}"
    one = client.models.retrieve("assistant")
    assert one.id == "assistant", f"retrieve('assistant').id: {one.id!r}"
    assert one.object == "model" and one.owned_by == "rayai", f"retrieve('assistant'): {one!r}"
    e = failure(
        lambda: client.models.retrieve("nobody"),
        openai.NotFoundError,
        404,
        "retrieve('nobody')",
    )
    error_fields(e, "retrieve('nobody')", code="model_not_found")
    return f"{ids}; retrieve('nobody'): 404 {e.body!r}"


def check_completion():
    before = time.time()
    c = client.chat.completions.create(model="assistant", messages=user("Hello there"))
    after = time.time()
    assert c.object == "chat.completion", f"object: {c.object!r}"
    assert c.id.startswith("chatcmpl-") and len(c.id) > len("chatcmpl-"), f"id: {c.id!r}"
    assert c.model == "assistant", f"model: {c.model!r}"
    assert isinstance(c.created, int), f"created, an int: {c.created!r}"
    # Whole seconds: `created` may round down to the second before the request.
    assert before - 60 <= c.created <= after + 60, f"created {c.created} is not now ({before:.0f})"
    assert len(c.choices) == 1, f"one choice: {c.choices!r}"
    choice = c.choices[0]
    assert choice.index == 0, f"index: {choice.index!r}"
    assert choice.message.role == "assistant", f"role: {choice.message.role!r}"
    assert choice.message.content == "You said: Hello there", f"content: {choice.message.content!r}"
    assert not choice.message.tool_calls, f"no tool_calls: {choice.message.tool_calls!r}"
    assert choice.finish_reason == "stop", f"finish_reason: {choice.finish_reason!r}"
    assert choice.logprobs is None, f"logprobs: {choice.logprobs!r}"
    usage = c.usage
    assert usage is not None, "usage missing"
    got = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    assert got == (2, 4, 6), f"usage (prompt, completion, total): {got}, expected (2, 4, 6)"
    return f"{choice.message.content!r}, id {c.id}, usage {got}"


def stream_chunks(**kw):
    stream = client.chat.completions.create(
        model="assistant", messages=user("stream this please"), stream=True, **kw
    )
    with stream:
        return list(stream)


def check_stream():
    chunks = stream_chunks()
    assert chunks, "no chunk"
    ids = {c.id for c in chunks}
    assert len(ids) == 1, f"one id for every chunk: {sorted(ids)}"
    (chunk_id,) = ids
    assert chunk_id.startswith("chatcmpl-"), f"id: {chunk_id!r}"
    for c in chunks:
        assert c.object == "chat.completion.chunk", f"object: {c.object!r}"
        assert c.model == "assistant", f"model: {c.model!r}"
        assert len(c.choices) == 1, f"one choice per chunk (no usage asked): {c!r}"
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant", f"the first delta's role: {first.delta!r}"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "You said: stream this please", f"the deltas joined: {text!r}"
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop", f"the last chunk's finish_reason: {last!r}"
    assert all(
        c.choices[0].finish_reason is None for c in chunks[:-1]
    ), f"finish_reason only on the last chunk: {[c.choices[0].finish_reason for c in chunks]}"
    texts = sum(1 for c in chunks if c.choices[0].delta.content)
    plain = f"{len(chunks)} chunks ({texts} with text)"

    chunks = stream_chunks(stream_options={"include_usage": True})
    text = "".join(d.delta.content or "" for c in chunks for d in c.choices)
    assert text == "You said: stream this please", f"the deltas joined (usage asked): {text!r}"
    assert len({c.id for c in chunks}) == 1, f"one id: {sorted({c.id for c in chunks})}"
    finished = [d.finish_reason for c in chunks for d in c.choices if d.finish_reason]
    assert finished == ["stop"], f"one finish_reason, stop: {finished}"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, f"a last chunk with usage: {last!r}"
    u = last.usage
    assert all(
        isinstance(n, int) for n in (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    ), f"usage counts: {u!r}"
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage total: {u!r}"
    return (
        f"{plain}, one id; with include_usage a usage chunk "
        f"{u.prompt_tokens}/{u.completion_tokens}/{u.total_tokens}"
    )


def check_tool_calls():
    messages = user("What is the weather in Lyon?")
    c = client.chat.completions.create(model="weather", messages=messages)
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls", f"finish_reason: {choice.finish_reason!r}"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, f"one tool call: {calls!r}"
    call = calls[0]
    assert call.type == "function", f"the call's type: {call.type!r}"
    assert call.function.name == "get_weather", f"the function: {call.function.name!r}"
    args = json.loads(call.function.arguments)
    assert args == {"city": "Lyon"}, f"arguments: {call.function.arguments!r}"
    assert choice.message.content is None, f"no text with the call: {choice.message.content!r}"
    messages = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    c = client.chat.completions.create(model="weather", messages=messages)
    choice = c.choices[0]
    assert (
        choice.message.content == "The forecast: sunny"
    ), f"the answer after the tool: {choice.message.content!r}"
    assert choice.finish_reason == "stop", f"finish_reason after the tool: {choice.finish_reason!r}"
    assert not choice.message.tool_calls, f"no more calls: {choice.message.tool_calls!r}"
    return f"get_weather({call.function.arguments}) id {call.id}, then {choice.message.content!r}"


def check_errors():
    e = failure(
        lambda: client.chat.completions.create(model="nobody", messages=user("hi")),
        openai.NotFoundError,
        404,
        "model 'nobody'",
    )
    assert e.code == "model_not_found", f"model 'nobody': code {e.code!r}"
    error_fields(
        e, "model 'nobody'", type="invalid_request_error", param="model", code="model_not_found"
    )
    # The SDK insists on `messages`: the request without them, raw through the client.
    missing = failure(
        lambda: client.post("/chat/completions", body={"model": "assistant"}, cast_to=object),
        openai.BadRequestError,
        400,
        "no messages",
    )
    error_fields(missing, "no messages", type="invalid_request_error")
    not_list = failure(
        lambda: client.post(
            "/chat/completions", body={"model": "assistant", "messages": "hi"}, cast_to=object
        ),
        openai.BadRequestError,
        400,
        "messages not a list",
    )
    error_fields(not_list, "messages not a list", type="invalid_request_error")
    return (
        f"unknown model: 404 {e.body!r}; no messages: 400 {missing.body.get('message')!r}; "
        f"messages not a list: 400"
    )


def sleep_call(seconds, **kw):
    return client.chat.completions.create(model="sleepy", messages=user(seconds), **kw)


def sleepy_load():
    """sleepy's requests in its replica and in its queue, as /metrics says."""

    def total(text, name):
        return sum(
            v for labels, v in samples(text, name) if "sleepy" in labels.get("deployment", "")
        )

    text = metrics()
    return (
        total(text, "ray_serve_replica_processing_queries"),
        total(text, "ray_serve_deployment_queued_queries"),
    )


def wait_for_sleepy(want, what):
    """Waits (at most 1.5 s: the sleeps take 2) until sleepy holds `want` (processing, queued)."""
    until = time.monotonic() + 1.5
    while (load := sleepy_load()) != want:
        assert time.monotonic() < until, (
            f"{what}: sleepy's (processing, queued) is {load} after 1.5 s, not {want} "
            "(ray_serve_replica_processing_queries, ray_serve_deployment_queued_queries)"
        )
        time.sleep(0.02)


def check_backpressure():
    # sleepy takes one request and queues one: two 2-second sleeps fill it.
    answers, errors = [], []

    def sleeper():
        try:
            answers.append(sleep_call("2").choices[0].message.content)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=sleeper) for _ in range(2)]
    try:
        # Each request reaches sleepy before the next one leaves.
        threads[0].start()
        wait_for_sleepy((1, 0), "the first sleep")
        threads[1].start()
        wait_for_sleepy((1, 1), "the second sleep")
        e = failure(lambda: sleep_call("0"), openai.InternalServerError, 503, "a third request")
        body = error_fields(e, "the 503", type="server_error", code="overloaded")
    finally:
        for t in threads:
            if t.ident is not None:  # started
                t.join(timeout=TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "the two sleeps did not finish"
    assert not errors, f"the two sleeps: {errors!r}"
    assert answers == ["slept 2s"] * 2, f"the two sleeps' answers: {answers!r}"
    return f"503 {body!r}; the two sleeps answered {answers}"


def check_timeout():
    # sleepy is free again (check_backpressure waited for its sleeps).
    started = time.monotonic()
    e = failure(
        lambda: sleep_call("2", extra_headers={"x-request-timeout-seconds": "0.3"}),
        openai.APIStatusError,
        408,
        "sleep 2 s with x-request-timeout-seconds 0.3",
    )
    took = time.monotonic() - started
    body = error_fields(e, "the 408", type="timeout", code="timeout")
    # The timed-out request must not keep sleepy's only slot: the next one is served.
    answer = sleep_call("0").choices[0].message.content
    assert answer == "slept 0s", f"sleepy after the timeout: {answer!r}"
    return f"408 after {took:.2f} s: {body!r}; then {answer!r}"


def lora(text, model="lora", adapter=None):
    headers = {"serve_multiplexed_model_id": adapter} if adapter else None
    c = client.chat.completions.create(model=model, messages=user(text), extra_headers=headers)
    return c


def check_multiplexing():
    c = lora("hi", model="lora:adapter-1")
    assert (
        c.choices[0].message.content == "[adapter-1] hi"
    ), f"model lora:adapter-1: {c.choices[0].message.content!r}"
    assert c.model == "lora:adapter-1", f"the model as sent: {c.model!r}"
    c = lora("hello", adapter="adapter-2")
    assert (
        c.choices[0].message.content == "[adapter-2] hello"
    ), f"header adapter-2: {c.choices[0].message.content!r}"
    for i in range(10):
        adapter = f"adapter-{1 + i % 2}"
        text = lora(f"call {i}", adapter=adapter).choices[0].message.content
        assert text == f"[{adapter}] call {i}", f"call {i} with {adapter}: {text!r}"

    text = metrics()
    registered = [
        labels
        for labels, v in samples(text, "ray_serve_registered_multiplexed_model_id")
        if labels.get("model_id") == "adapter-1" and v == 1
    ]
    multiplexed = "\n".join(
        line for line in text.splitlines() if "multiplexed" in line and not line.startswith("#")
    )
    assert registered, (
        'ray_serve_registered_multiplexed_model_id{...,model_id="adapter-1"} 1 missing:\n'
        + multiplexed
    )
    # The deployment, as the metrics name it.
    key = {k: registered[0][k] for k in ("application", "deployment") if k in registered[0]}
    assert "deployment" in key, f"a deployment label: {registered[0]}"
    load_counter = next(
        (
            name
            for name in (
                "ray_serve_multiplexed_models_load_counter_total",
                "ray_serve_multiplexed_models_load_counter",
            )
            if samples(text, name)
        ),
        None,
    )
    assert load_counter, (
        "ray_serve_multiplexed_models_load_counter(_total) missing:\n" + multiplexed
    )
    loads = [
        (labels, v)
        for labels, v in samples(text, load_counter)
        if all(labels.get(k) == v2 for k, v2 in key.items())
    ]
    assert loads, f"{load_counter} for {key} missing:\n{multiplexed}"
    total = sum(v for _, v in loads)
    # Two adapters, each loaded once (one extra load when both replicas raced for one).
    assert 2 <= total <= 3, (
        f"{load_counter} for {key}, summed over replicas: {total:g}, expected 2 or 3:\n"
        + multiplexed
    )

    # An adapter the deployment cannot load: the agent's 404.
    e = failure(lambda: lora("hi", model="lora:nope"), openai.NotFoundError, 404, "model lora:nope")
    return (
        f"lora:adapter-1 and the header answered; 10 alternating calls; {load_counter} {key} "
        f"summed {total:g} over {len(loads)} replica(s); lora:nope: 404 {e.body!r}"
    )


CHECKS = [
    ("models", check_models),
    ("chat completion", check_completion),
    ("streaming", check_stream),
    ("tool calls", check_tool_calls),
    ("errors", check_errors),
    ("backpressure", check_backpressure),
    ("timeout", check_timeout),
    ("multiplexing", check_multiplexing),
]


def main():
    started = time.monotonic()
    print(f"openai {openai.__version__}")
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
    client.close()
    print(
        f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed in {time.monotonic() - started:.2f} s"
    )
    sys.exit(1 if failed else 0)


main()
