"""The shared routing vectors through wasmtime-py, checked against their
expectations and, byte for byte, against `audit-archiver route`; and the
Python snippets of docs/embedding.md, run as written."""

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from wasmtime import Engine, Store
from wasmtime.component import Component, Linker, Record, Variant

REPO = Path(__file__).resolve().parent.parent.parent
# The component under test: env ROUTER_WASM (relative to the current
# directory), else the release build, which is also what the host embeds; the
# host is given `--component` only for ROUTER_WASM, so all runtimes run one .wasm.
WASM = Path(os.environ.get("ROUTER_WASM")
            or REPO / "target/component/wasm32-wasip2/release/audit_archiver_transform.wasm").resolve()
HOST_COMPONENT_ARGS = ["--component", str(WASM)] if os.environ.get("ROUTER_WASM") else []
HOST = Path(os.environ.get("AUDIT_ARCHIVER_BIN") or REPO / "target/release/audit-archiver").resolve()
GUIDE = REPO / "docs" / "embedding.md"
INTERFACE = "audit-archiver:routing/router@1.1.0"


def load_cases():
    cases = []
    for path in sorted((REPO / "tests" / "vectors").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["format"] == 1, f"{path.name}: unknown vector format"
        cases += [dict(case, name=f"{path.name}: {case['name']}") for case in doc["cases"]]
    return cases


CASES = load_cases()


class Router:
    """The component's four functions, in one store (it is pure: reusable)."""

    def __init__(self, wasm):
        engine = Engine()
        self.store = Store(engine)
        component = Component.from_file(engine, str(wasm))
        instance = Linker(engine).instantiate(self.store, component)
        iface = instance.get_export_index(self.store, INTERFACE)
        assert iface is not None, f"{wasm} does not export {INTERFACE}"

        def func(name):
            return instance.get_func(self.store, instance.get_export_index(self.store, name, iface))

        self._validate, self._route, self._batch, self._queue = (
            func("validate-settings"), func("route"), func("route-batch"), func("route-queue"))

    def validate(self, settings):
        return self._validate(self.store, settings)

    def route(self, settings, message):
        return self._route(self.store, settings, message)

    def route_batch(self, settings, messages):
        return self._batch(self.store, settings, messages)

    def route_queue(self, settings, queue, messages):
        """1.1's `route-queue`, packing and unpacking as the contract says
        (lengths in UTF-8 bytes); returns results like `route`'s."""
        text = "".join(getattr(m, "message-id") + m.body for m in messages)
        packed = [record(message_id_len=len(getattr(m, "message-id").encode()), body_len=len(m.body.encode()),
                         first_receive_ms=getattr(m, "first-receive-ms"), sent_ms=getattr(m, "sent-ms"))
                  for m in messages]
        out = self._queue(self.store, settings, queue, text, packed)
        placed, at, results = out.text.encode(), 0, []
        for result in out.results:
            if isinstance(result, Variant):
                results.append(result)
                continue
            tenant_end = at + getattr(result, "tenant-len")
            key_end = tenant_end + getattr(result, "key-len")
            results.append(record(tenant=placed[at:tenant_end].decode(), key=placed[tenant_end:key_end].decode(),
                                  time_ms=getattr(result, "time-ms")))
            at = key_end
        assert at == len(placed), "the text is exactly the tenants and keys"
        return results


@pytest.fixture(scope="module")
def router():
    return Router(WASM)


def record(**fields):
    value = Record()
    for name, field in fields.items():
        setattr(value, name.replace("_", "-"), field)
    return value


def to_settings(s):
    return record(key_template=s["key_template"], time_source=s["time_source"],
                  utc_offset_minutes=s["utc_offset_minutes"],
                  tenant_overrides=[record(queue=o["queue"], tenant=o["tenant"])
                                    for o in s["tenant_overrides"]])


def to_message(m):
    return record(message_id=m["message_id"], queue=m["queue"], body=m["body"],
                  first_receive_ms=m["first_receive_ms"], sent_ms=m["sent_ms"])


def check_expectation(case, result):
    expect = case["expect"]
    if "ok" in expect:
        assert not isinstance(result, Variant), f"{case['name']}: expected a placement, got {result}"
        got = {"tenant": result.tenant, "key": result.key, "time_ms": getattr(result, "time-ms")}
        assert got == expect["ok"], case["name"]
    else:
        assert isinstance(result, Variant), f"{case['name']}: expected {expect['error']}, got a placement"
        assert result.tag == expect["error"], case["name"]
        if "settings_error" in expect:
            assert result.payload.tag == expect["settings_error"], case["name"]


def json_string(s):
    """A JSON string exactly as serde_json writes it: `"` and `\\` escaped,
    U+0000..U+001F as \\b \\t \\n \\f \\r or \\u00xx (lowercase hex), all else
    (`/`, DEL, non-ASCII, U+2028) as is."""
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    out = []
    for ch in s:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def error_text(error):
    detail = error.payload if isinstance(error.payload, str) else error_text(error.payload)
    return f"{error.tag}: {detail}"


def render_line(message_id, result):
    """One output line of `audit-archiver route` for a WIT result."""
    if isinstance(result, Variant):
        return f'{{"message_id":{json_string(message_id)},"error":{json_string(error_text(result))}}}'
    return (f'{{"message_id":{json_string(message_id)},"tenant":{json_string(result.tenant)},'
            f'"key":{json_string(result.key)}}}')


def groups():
    by_settings = {}
    for case in CASES:
        by_settings.setdefault(json.dumps(case["settings"], sort_keys=True), []).append(case)
    return list(by_settings.values())


def test_there_are_vectors():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_route_meets_the_expectation(router, case):
    check_expectation(case, router.route(to_settings(case["settings"]), to_message(case["message"])))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_validate_settings_agrees(router, case):
    error = router.validate(to_settings(case["settings"]))
    if "settings_error" in case["expect"]:
        assert isinstance(error, Variant) and error.tag == case["expect"]["settings_error"]
    else:
        assert error is None, error


def test_route_batch_meets_every_expectation_in_order_and_equals_route(router):
    for group in groups():
        settings = to_settings(group[0]["settings"])
        results = router.route_batch(settings, [to_message(c["message"]) for c in group])
        assert len(results) == len(group)
        for case, result in zip(group, results):
            check_expectation(case, result)
            single = router.route(settings, to_message(case["message"]))
            assert render_line("x", result) == render_line("x", single), case["name"]


def test_route_queue_meets_every_expectation_and_the_host_prints_the_same_bytes(router):
    """1.1's `route-queue`, one batch per settings and queue, gives what
    `route` gives; and the host, which routes a batch from one queue through
    it too, prints the same bytes."""
    by_queue = {}
    for case in CASES:
        key = json.dumps([case["settings"], case["message"]["queue"]], sort_keys=True)
        by_queue.setdefault(key, []).append(case)
    host_compared = 0
    for group in by_queue.values():
        settings = to_settings(group[0]["settings"])
        results = router.route_queue(settings, group[0]["message"]["queue"], [to_message(c["message"]) for c in group])
        assert len(results) == len(group)
        for case, result in zip(group, results):
            check_expectation(case, result)
            single = router.route(settings, to_message(case["message"]))
            assert render_line("x", result) == render_line("x", single), case["name"]
            if not isinstance(result, Variant):
                assert getattr(result, "time-ms") == getattr(single, "time-ms"), case["name"]
        if cli_settings(group[0]["settings"]) != group[0]["settings"] or router.validate(settings) is not None:
            continue
        event = json.dumps({"Records": [lambda_record(c["message"]) for c in group]}, ensure_ascii=False)
        host = run_host(flags(group[0]["settings"]), event)
        assert host.returncode == 0, host.stderr.decode("utf-8", "replace")
        expected = "".join(render_line(c["message"]["message_id"], r) + "\n" for c, r in zip(group, results))
        assert host.stdout == expected.encode("utf-8"), f"{group[0]['name']}: host and wasmtime-py differ"
        host_compared += len(group)
    assert host_compared > len(CASES) / 2, f"only {host_compared} vectors compared with the host"


def flags(s):
    sign = "-" if s["utc_offset_minutes"] < 0 else "+"
    hours, minutes = divmod(abs(s["utc_offset_minutes"]), 60)
    args = [f"--key-template={s['key_template']}", f"--time-source={s['time_source']}",
            f"--utc-offset={sign}{hours:02}:{minutes:02}"]
    for o in s["tenant_overrides"]:
        assert "," not in o["queue"] + o["tenant"], "--tenant-map splits its value on ','"
        args.append(f"--tenant-map={o['queue']}={o['tenant']}")
    return args


def cli_settings(s):
    """The settings the host hands the component for these settings given as
    flags: the same, but `--tenant-map QUEUE=TENANT` also takes a queue URL or
    ARN and passes its bare name (host/src/config.rs `override_for`), where
    the WIT contract refuses a URL as `invalid-tenant-override`."""
    def bare(queue):
        if queue.startswith("arn:"):
            return queue.rsplit(":", 1)[-1]
        if "://" not in queue:
            return queue
        parts = [p for p in queue.split("://", 1)[1].split("?")[0].split("/") if p]
        return parts[-1] if parts else ""
    return dict(s, tenant_overrides=[{"queue": bare(o["queue"].strip()), "tenant": o["tenant"].strip()}
                                     for o in s["tenant_overrides"]])


def lambda_record(m):
    attributes = {}
    if m["first_receive_ms"] is not None:
        attributes["ApproximateFirstReceiveTimestamp"] = str(m["first_receive_ms"])
    if m["sent_ms"] is not None:
        attributes["SentTimestamp"] = str(m["sent_ms"])
    return {"messageId": m["message_id"], "body": m["body"], "eventSourceARN": m["queue"],
            "attributes": attributes}


def run_host(args, event):
    if not HOST.is_file():
        pytest.fail(f"{HOST} does not exist: run `cargo build --release` first")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_ARCHIVER_")}
    return subprocess.run([str(HOST), "route", "--event", "-", *HOST_COMPONENT_ARGS, *args], input=event.encode("utf-8"),
                          capture_output=True, env=env, check=False)


def test_audit_archiver_route_prints_the_same_bytes(router):
    compared = refused = 0
    for group in groups():
        name = group[0]["name"]
        args = flags(group[0]["settings"])
        settings = to_settings(cli_settings(group[0]["settings"]))
        event = json.dumps({"Records": [lambda_record(c["message"]) for c in group]}, ensure_ascii=False)
        host = run_host(args, event)
        stderr = host.stderr.decode("utf-8", "replace")
        settings_error = router.validate(settings)
        if settings_error is not None:
            flag = {"invalid-offset": "--utc-offset",
                    "invalid-tenant-override": "--tenant-map"}.get(settings_error.tag, "--key-template")
            assert host.returncode == 2, (
                f"{name}: host exit {host.returncode} for settings the component refuses "
                f"({settings_error.tag}); flags {args}; stderr {stderr}")
            assert host.stdout == b"", name
            assert flag in stderr, f"{name}: {flag} not named in: {stderr}"
            refused += len(group)
            continue
        assert host.returncode == 0, f"{name}: host exit {host.returncode}: {stderr}"
        expected = "".join(
            render_line(c["message"]["message_id"], router.route(settings, to_message(c["message"]))) + "\n"
            for c in group).encode("utf-8")
        for case, want, got in zip(group, expected.split(b"\n"), host.stdout.split(b"\n")):
            assert got == want, f"{case['name']}: host and wasmtime-py differ"
        assert host.stdout == expected
        compared += len(group)
    assert compared + refused == len(CASES)
    print(f"compared {compared} vectors with audit-archiver route byte for byte; "
          f"{refused} refused at start-up (exit 2)")


def test_audit_archiver_route_prints_the_same_bytes_for_text_that_json_escapes(router):
    """Not in the vectors: ids and queues that exercise serde_json's escaping
    (quotes, backslashes, control characters, DEL, non-ASCII, U+2028) in keys
    and in error details."""
    settings = {"key_template": "default", "time_source": "first-receive", "utc_offset_minutes": 540,
                "tenant_overrides": []}
    queue = "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo"
    ids = ["é😀", "a\u2028b", "q\"uo'te", "tab\there", "nl\nx\r", "del\x7f", "nul\x00", "back\\slash", "es\x1bc"]
    messages = [{"message_id": i, "queue": queue, "body": "", "first_receive_ms": 1750991540913, "sent_ms": None}
                for i in ids]
    messages.append({"message_id": "m-q", "queue": "ünï-q", "body": "", "first_receive_ms": 1750991540913,
                     "sent_ms": None})
    host = run_host(flags(settings), json.dumps({"Records": [lambda_record(m) for m in messages]}))
    assert host.returncode == 0, host.stderr.decode()
    expected = "".join(render_line(m["message_id"], router.route(to_settings(settings), to_message(m))) + "\n"
                       for m in messages)
    assert "é😀" in expected and "\\u0000" in expected
    assert host.stdout.decode("utf-8") == expected


def guide_block(marker, lang):
    text = GUIDE.read_text(encoding="utf-8")
    found = re.findall(rf"<!-- {re.escape(marker)} -->\n```{lang}\n(.*?)\n```", text, re.S)
    assert len(found) == 1, f"expected one `<!-- {marker} -->` ```{lang} block in {GUIDE}"
    return found[0] + "\n"


def test_the_guide_python_snippet_runs_as_documented(tmp_path):
    (tmp_path / "snippet.py").write_text(guide_block("snippet: python", "python"), encoding="utf-8")
    shutil.copy(WASM, tmp_path / "audit_archiver_transform.wasm")
    run = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, check=False)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode("utf-8") == guide_block("output: node, python", "text")


def test_the_guide_lambda_handler_archives_without_loss(tmp_path, monkeypatch):
    """The guide's Lambda handler against moto's in-process S3: no overwrite,
    no loss, partial batch failures only for what was not stored."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("S3_BUCKET_NAME", "archive")
    monkeypatch.setenv("ROUTER_WASM", str(WASM))
    monkeypatch.setenv("KEY_TEMPLATE", "seed")  # collisions are possible: the handler must cope
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    source = guide_block("snippet: lambda-python", "python")

    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="archive")
        handler = types.ModuleType("lambda_function")
        exec(compile(source, str(tmp_path / "lambda_function.py"), "exec"), handler.__dict__)

        class FailingS3:
            """S3, except that PutObject fails for message m-3."""

            def __init__(self, real):
                self.real = real

            def put_object(self, **kw):
                if kw["Metadata"]["sqs-message-id"] == "m-3":
                    raise RuntimeError("S3 is unavailable")
                return self.real.put_object(**kw)

            def head_object(self, **kw):
                return self.real.head_object(**kw)

        real = handler.s3
        handler.s3 = FailingS3(real)
        arn = "arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo"

        def sqs(message_id, first_receive, body):
            attributes = {"ApproximateFirstReceiveTimestamp": str(first_receive)} if first_receive else {}
            return {"messageId": message_id, "body": body, "eventSourceARN": arn, "attributes": attributes}

        event = {"Records": [
            sqs("m-1", 1750991540913, '{"user": "alice"}'),
            sqs("m-2", None, '{"user": "bob"}'),       # unroutable: quarantined
            sqs("m-3", 1750991540000, '{"user": "carol"}'),  # S3 fails: reported
        ]}
        assert handler.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}
        assert handler.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}  # redelivery

        # Same second, same `seed` key, another message: stored beside it.
        handler.s3 = real
        collision = {"Records": [sqs("m-4", 1750991540999, '{"user": "dave"}')]}
        assert handler.handler(collision, None) == {"batchItemFailures": []}

        listed = real.list_objects_v2(Bucket="archive")["Contents"]
        bodies = {o["Key"]: real.get_object(Bucket="archive", Key=o["Key"])["Body"].read().decode()
                  for o in listed}
        key = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json"
        assert bodies == {
            key: '{"user": "alice"}',
            "_quarantine/m-2.json": '{"user": "bob"}',
            key.replace(".json", "-m-4.json"): '{"user": "dave"}',
        }
        head = real.head_object(Bucket="archive", Key=key)
        assert head["Metadata"]["sqs-message-id"] == "m-1"
