"""Ceilings: the most the machine gives each measured figure, measured in the same run, so that a figure is
read as a share of what was possible here rather than against a target alone.

- HTTP: GET /livez (a constant JSON, no database, no Redis) on the granian the scenario started as the
  Procfile ships it, every middleware included, by the same load generator and client count.
- Database: the rows the ingest figure accepted, inserted straight into a copy of notifier_notification
  (its columns, defaults and indexes; no foreign keys) by psycopg from as many clients, synchronous_commit
  on: one autocommitted single-row INSERT each (what a single-recipient POST must at least do), and COPY
  in statements of 1,000 rows (the cheapest path).
- Providers: each fake driven by the leanest client for its protocol at the concurrency notifier uses: a
  raw h2 client on one TLS connection for APNs, an aiohttp keep-alive pool for FCM, SendGrid and Twilio.
  It runs as its own process (`python -m bench.ceilings --provider NAME --info JSON`), so its CPU is its own.

A ceiling is a row of system "ceiling"; `against(row, ceiling, name)` puts it beside a figure, and the
report shows each figure's ceilings and its share of them (bench/report.py).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import resource
import ssl
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg
from psycopg.types.json import Jsonb

from bench.harness import BIN, DATABASE_URL, ROOT, base_env, loadgen
from bench.report import row

LIVEZ = "/livez"
COPY_ROWS_PER_STATEMENT = 1000
TABLE = "bench_ceiling_notification"
# What notifier keeps in flight per worker process (notifier/providers): APNs' batch_concurrency, FCM's
# concurrency, the thread pool of the other adapters (base.Provider.batch_concurrency).
PROVIDER_CONCURRENCY = {"apns": 100, "fcm": 100, "sendgrid": 8, "twilio": 8}


def against(r: dict, ceiling: dict | None, name: str) -> dict:
    """Put `ceiling` (a measured ceiling row) beside the figure `r`, under the short `name`."""
    if ceiling and ceiling["status"] == "measured" and ceiling["value"]:
        r.setdefault("ceilings", []).append({"name": name, "value": ceiling["value"], "unit": ceiling["unit"]})
    return r


# --- HTTP ----------------------------------------------------------------------------------------------

def http(scenario: str, api, clients: int, duration: float, key: str) -> dict:
    """GET /livez on the running `api` (harness.api_start) with the load generator, `clients` at once."""
    result = loadgen(api.url, "unused", get=LIVEZ, duration=duration, concurrency=clients)
    latency = result["latency_ms"]
    return row(scenario, f"HTTP ceiling: GET {LIVEZ} (constant JSON, no database, no Redis)", result["accepted_per_s"],
               "req/s", None, None, key=key, system="ceiling", raw=result,
               setup=f"{api.description} as the Procfile ships it, every middleware; {clients} clients, {duration} s; "
                     f"p50 {latency['p50']} ms, p99 {latency['p99']} ms; load generator CPU {result['loadgen_cpu_s']} s")


# --- database ------------------------------------------------------------------------------------------

def database(scenario: str, rows: int, clients: int, how: str, key: str, url: str = DATABASE_URL) -> dict:
    """`rows` notification rows inserted by `clients` connections at once, `how` = "insert" (one autocommitted
    single-row INSERT each) or "copy" (COPY, COPY_ROWS_PER_STATEMENT rows a statement, each its own
    transaction). The rows copy the newest notification the scenario made, each with its own id, one of the
    scenario's recipients and the time it is written."""
    label = ("one autocommitted single-row INSERT per request" if how == "insert"
             else f"COPY, {COPY_ROWS_PER_STATEMENT:,} rows per statement")
    figure = f"database ceiling: {label}, {clients} clients: rows/s"
    if rows <= 0:
        return row(scenario, figure, None, "rows/s", None, None, key=key, system="ceiling",
                   status="skipped: the figure it is the ceiling of accepted nothing")
    template, columns, recipients = _template(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (LIKE notifier_notification INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                     "INCLUDING INDEXES)")
        synchronous_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    try:
        seconds, cpu = _insert_in_parallel(url, template, columns, recipients, rows, clients, how)
        with psycopg.connect(url) as conn:
            stored = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    if stored != rows:
        raise RuntimeError(f"database ceiling: {stored} rows stored of {rows}")
    return row(scenario, figure, round(rows / seconds, 1), "rows/s", None, None, key=key, system="ceiling",
               raw={"rows": rows, "seconds": round(seconds, 3), "client_cpu_s": round(cpu, 2)},
               setup=f"{rows:,} rows (as many as the figure accepted) in {seconds:.2f} s into a copy of "
                     f"notifier_notification (columns, defaults, indexes; no foreign keys), psycopg "
                     f"{psycopg.__version__} ({psycopg.pq.__impl__}), one connection per client (threads), "
                     f"synchronous_commit {synchronous_commit}; client CPU {cpu:.2f} s")


def _template(url: str):
    """The newest notification's values, its column names and types, and the recipients notifications went to."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute("SELECT * FROM notifier_notification ORDER BY created_at DESC LIMIT 1")
        template = cursor.fetchone()
        if template is None:
            raise RuntimeError("database ceiling: no notification to copy the shape of")
        jsonb = psycopg.postgres.types["jsonb"].oid
        columns = [(d.name, d.type_code == jsonb) for d in cursor.description]
        recipients = [r[0] for r in conn.execute(
            "SELECT DISTINCT recipient_id FROM notifier_notification LIMIT 10000").fetchall()]
    return template, columns, recipients


def _rows(template, columns, recipients, offset: int):
    """Endless rows like `template`: a new id, the next recipient, now as created_at and due_at."""
    names = [name for name, _ in columns]
    fixed = [Jsonb(value) if is_json and value is not None else value for value, (_, is_json) in zip(template, columns)]
    at = {name: names.index(name) for name in ("id", "recipient_id", "created_at", "due_at")}
    for recipient in itertools.islice(itertools.cycle(recipients), offset, None):
        values = list(fixed)
        now = datetime.now(timezone.utc)
        values[at["id"]], values[at["recipient_id"]] = uuid.uuid4(), recipient
        values[at["created_at"]] = values[at["due_at"]] = now
        yield values


def _insert_in_parallel(url, template, columns, recipients, rows, clients, how) -> tuple[float, float]:
    """Wall seconds from every client starting together to the last one done, and the process's CPU."""
    names = ", ".join(name for name, _ in columns)
    insert = f"INSERT INTO {TABLE} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
    shares = [rows // clients + (1 if i < rows % clients else 0) for i in range(clients)]
    connections = [psycopg.connect(url, autocommit=True) for _ in range(clients)]
    for conn in connections:
        conn.execute("SET synchronous_commit = on")
    start = threading.Barrier(clients + 1)
    errors = []

    def client(conn, share, offset):
        made = _rows(template, columns, recipients, offset)
        start.wait()
        try:
            if how == "insert":
                for _ in range(share):
                    conn.execute(insert, next(made))
            else:
                for first in range(0, share, COPY_ROWS_PER_STATEMENT):
                    with conn.cursor().copy(f"COPY {TABLE} ({names}) FROM STDIN") as copy:
                        for _ in range(min(COPY_ROWS_PER_STATEMENT, share - first)):
                            copy.write_row(next(made))
        except Exception as error:  # reported after the others finish
            errors.append(error)

    threads = [threading.Thread(target=client, args=(conn, share, i * 7919))
               for i, (conn, share) in enumerate(zip(connections, shares))]
    for thread in threads:
        thread.start()
    try:
        start.wait()
        began, cpu = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.join()
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        for conn in connections:
            conn.close()
    if errors:
        raise errors[0]
    return seconds, cpu


# --- providers -----------------------------------------------------------------------------------------

def provider(scenario: str, fakes, name: str, duration: float, key: str, concurrency: int | None = None,
             batch: int = 1) -> dict:
    """Requests per second the fake `name` of the running bench.fakes answers to the lean client at
    notifier's concurrency (or `concurrency`); the fake's record of them is reset after. SendGrid takes a
    `batch` of personalizations a request, as campaign email sends them: then the figure is emails/s."""
    concurrency = concurrency or PROVIDER_CONCURRENCY[name]
    args = [str(BIN / "python"), "-m", "bench.ceilings", "--provider", name, "--info", json.dumps(fakes.info[name]),
            "--concurrency", str(concurrency), "--duration", str(duration), "--batch", str(batch)]
    out = subprocess.run(args, cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=duration + 120)
    fakes.reset()
    shape = f"{batch:,} personalizations a request, " if batch > 1 else ""
    unit = "emails/s" if batch > 1 else "req/s"
    figure = f"provider ceiling: fake {name}, {CLIENTS[name]}, {shape}{concurrency} in flight: " + (
        "emails/s" if batch > 1 else "requests/s")
    if out.returncode != 0:
        return row(scenario, figure, None, unit, None, None, key=key, system="ceiling",
                   status=f"failed: {(out.stderr.strip() or 'no output').splitlines()[-1]}"[:300])
    result = json.loads(out.stdout)
    bad = {status: n for status, n in result["status"].items() if status != str(OK_STATUS[name])}
    return row(scenario, figure, round(result["per_s"] * batch, 1), unit, None, None, key=key, system="ceiling",
               raw=result,
               setup=f"{result['ok']:,} requests answered {OK_STATUS[name]} in {result['seconds']} s"
                     + (f", others {bad}" if bad else "") + f"; client CPU {result['cpu_s']} s; the fake checks and "
                     f"records each request as it does notifier's; fake latency {fakes.latency} s")


CLIENTS = {"apns": "raw h2 client on one TLS connection", "fcm": "aiohttp keep-alive pool",
           "sendgrid": "aiohttp keep-alive pool", "twilio": "aiohttp keep-alive pool"}
OK_STATUS = {"apns": 200, "fcm": 200, "sendgrid": 202, "twilio": 201}


class _H2Client(asyncio.Protocol):
    """An HTTP/2 client connection with h2: requests are streams, answered when their stream ends."""

    def __init__(self):
        from h2.config import H2Configuration
        from h2.connection import H2Connection

        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.transport = None
        self.waiting: dict[int, asyncio.Future] = {}
        self.statuses: dict[int, str] = {}

    def connection_made(self, transport):
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data):
        from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

        for event in self.conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                self.statuses[event.stream_id] = dict(event.headers).get(":status", "?")
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (StreamEnded, StreamReset)):
                future = self.waiting.pop(event.stream_id, None)
                if future is not None and not future.done():
                    future.set_result(self.statuses.pop(event.stream_id, "reset"))
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc):
        for future in self.waiting.values():
            if not future.done():
                future.set_result("connection lost")

    async def post(self, headers: list, body: bytes) -> str:
        stream_id = self.conn.get_next_available_stream_id()
        future = asyncio.get_running_loop().create_future()
        self.waiting[stream_id] = future
        self.conn.send_headers(stream_id, headers)
        self.conn.send_data(stream_id, body, end_stream=True)
        self.transport.write(self.conn.data_to_send())
        return await future


async def _apns_sender(info: dict):
    import jwt

    env = info["env"]
    context = ssl.create_default_context(cafile=env["APNS_CA_FILE"])
    context.set_alpn_protocols(["h2"])
    _, client = await asyncio.get_running_loop().create_connection(
        _H2Client, env["APNS_HOST"], int(env["APNS_PORT"]), ssl=context)
    with open(env["APNS_KEY_FILE"]) as f:
        token = jwt.encode({"iss": env["APNS_TEAM_ID"], "iat": int(time.time())}, f.read(), algorithm="ES256",
                           headers={"kid": env["APNS_KEY_ID"]})
    body = json.dumps({"aps": {"alert": {"title": "Order shipped", "body": "Your order is on its way"}}}).encode()
    numbers = itertools.count()

    async def send(session) -> str:
        device = f"{next(numbers):064x}"
        headers = [(":method", "POST"), (":scheme", "https"), (":authority", env["APNS_HOST"]),
                   (":path", f"/3/device/{device}"), ("authorization", f"bearer {token}"),
                   ("apns-topic", env["APNS_TOPIC"]), ("apns-push-type", "alert"), ("apns-priority", "10"),
                   ("content-length", str(len(body)))]
        return await client.post(headers, body)

    return send, client.transport.close


async def _http_sender(name: str, info: dict, session, batch: int = 1):
    """send(session) for the HTTP/1.1 fakes, with what each needs first (FCM's access token)."""
    numbers = itertools.count()
    if name == "fcm":
        import jwt

        config = info["config"]
        with open(config["credentials_file"]) as f:
            account = json.load(f)
        now = int(time.time())
        assertion = jwt.encode({"iss": account["client_email"], "scope": "https://www.googleapis.com/auth/firebase.messaging",
                                "aud": account["token_uri"], "iat": now, "exp": now + 3600},
                               account["private_key"], algorithm="RS256")
        async with session.post(account["token_uri"], data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}) as answer:
            access_token = (await answer.json())["access_token"]
        url = f"{config['endpoint']}/v1/projects/{account['project_id']}/messages:send"
        headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}

        def body():
            return json.dumps({"message": {"token": f"ceiling-token-{next(numbers)}",
                                           "notification": {"title": "Order shipped", "body": "Your order is on its way"},
                                           "android": {"priority": "high"}}})
    elif name == "sendgrid":
        env = info["env"]
        url = env["SENDGRID_HOST"].rstrip("/") + "/v3/mail/send"
        headers = {"Authorization": f"Bearer {env['SENDGRID_API_KEY']}", "Content-Type": "application/json"}

        def body():  # a campaign batch carries each recipient's link and delivery id
            personalizations = [{"to": [{"email": f"ceiling-{n}@example.com"}], "custom_args": {"delivery_id": str(n)},
                                 "substitutions": {"-link-": f"https://notifier.example.com/t/c/{n:032x}"}}
                                for n in itertools.islice(numbers, batch)]
            return json.dumps({"personalizations": personalizations, "from": {"email": env["EMAIL_FROM"]},
                               "subject": "Order shipped",
                               "content": [{"type": "text/plain", "value": "Your order is on its way: -link-"}]})
    else:  # twilio
        env = info["env"]
        url = f"{env['TWILIO_BASE_URL'].rstrip('/')}/2010-04-01/Accounts/{env['TWILIO_ACCOUNT_SID']}/Messages.json"
        secret = base64.b64encode(f"{env['TWILIO_ACCOUNT_SID']}:{env['TWILIO_AUTH_TOKEN']}".encode()).decode()
        headers = {"Authorization": f"Basic {secret}", "Content-Type": "application/x-www-form-urlencoded"}

        def body():
            return f"To=%2B1555{next(numbers) % 10_000_000:07d}&From=%2B15005550006&Body=Your+order+is+on+its+way"

    async def send(session) -> str:
        async with session.post(url, data=body(), headers=headers) as answer:
            await answer.read()
            return str(answer.status)

    return send


async def drive(name: str, info: dict, concurrency: int, duration: float, warmup: float = 1.0, batch: int = 1) -> dict:
    """A closed loop: `concurrency` senders, each sending its next request when its last was answered."""
    import aiohttp

    status: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        if name == "apns":
            send, close = await _apns_sender(info)
        else:
            send, close = await _http_sender(name, info, session, batch), None
        measure_from = time.perf_counter() + warmup
        deadline = measure_from + duration

        async def sender():
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    answer = await send(session)
                except Exception as error:  # counted: a fake that drops connections is a result
                    answer = type(error).__name__
                if started >= measure_from:
                    status[answer] = status.get(answer, 0) + 1

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        seconds = time.perf_counter() - measure_from
        if close:
            close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ok = status.get(str(OK_STATUS[name]), 0)
    return {"provider": name, "concurrency": concurrency, "seconds": round(seconds, 2), "ok": ok,
            "per_s": round(ok / seconds, 1), "status": status, "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="drive one fake provider with the lean client (bench/ceilings.py)")
    parser.add_argument("--provider", required=True, choices=sorted(PROVIDER_CONCURRENCY))
    parser.add_argument("--info", required=True, help="the fake's JSON line from bench.fakes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--batch", type=int, default=1, help="SendGrid personalizations a request")
    args = parser.parse_args(argv)
    result = asyncio.run(drive(args.provider, json.loads(args.info), args.concurrency, args.duration,
                               batch=args.batch))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
