#!/usr/bin/env python3
"""Peak memory of the real binary under hostile `POST /v1/messages` bodies.

    cargo build --release
    benches/api_memory.py [target/release/postern]

Starts `postern serve` on loopback (a temp spool, a relay URL that nothing
listens on, so messages stay queued), sends each case `parallel` times at
once from threads, and reports the server's VmHWM (peak resident set, from
/proc/<pid>/status) after the case, plus the status codes it answered. A
fresh server per case, so each peak is that case's alone. Standard library
only; loopback only. Not a test: memory depends on the allocator and the
build, so the numbers go into docs/BENCHMARKS.md, not into assertions.
"""
import http.client, json, os, socket, subprocess, sys, tempfile, threading, time, base64

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/postern"
KEY = "api-memory-bench-key-0123456789ab"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def post(port, body, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        c.request("POST", "/v1/messages", body=body, headers={
            "authorization": f"Bearer {KEY}", "content-type": "application/json"})
        r = c.getresponse()
        data = r.read()
        code = ""
        try:
            code = json.loads(data).get("error", {}).get("code", "")
        except ValueError:
            pass
        out.append(f"{r.status} {code}".strip())
    except OSError as e:
        out.append(f"error {e}")
    finally:
        c.close()


def run_case(name, body, parallel):
    smtp, http_port = free_port(), free_port()
    spool = tempfile.mkdtemp(prefix="postern-apimem-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
    env.update({
        "POSTERN_SMTP_LISTEN": f"127.0.0.1:{smtp}",
        "POSTERN_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "POSTERN_SPOOL_DIR": spool,
        "POSTERN_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "POSTERN_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "POSTERN_API_KEYS": KEY,
        "POSTERN_RELAY_URL": "smtp://127.0.0.1:9?tls=none",
        "POSTERN_LOG_FORMAT": "json",
        "NO_COLOR": "1",
    })
    log = open(os.path.join(spool, "log.txt"), "w")
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        base = hwm_kib(proc.pid)
        out = []
        threads = [threading.Thread(target=post, args=(http_port, body, out)) for _ in range(parallel)]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - start
        peak = hwm_kib(proc.pid)
        print(f"{name:<44} x{parallel}  body {len(body)/1e6:6.1f} MB  "
              f"peak RSS {peak/1024:7.1f} MiB (idle {base/1024:5.1f})  "
              f"{took:5.1f}s  {sorted(out)}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def base_request(**extra):
    r = {"from": "a@example.com", "to": "b@example.com", "subject": "s", "text": "hi"}
    r.update(extra)
    return r


def main():
    empty = '{"filename":"a","content":""}'
    n = 1_000_000
    million = ('{"from":"a@example.com","to":"b@example.com","text":"hi","attachments":['
               + ",".join([empty] * n) + "]}").encode()
    bcc = json.dumps(base_request(bcc=[f"u{i}@example.net" for i in range(50_000)])).encode()
    meta = ('{"from":"a@example.com","to":"b@example.com","text":"hi","metadata":{"k":['
            + ",".join(["0"] * 10_000_000) + "]}}").encode()
    big = base64.b64encode(os.urandom(22 * 1024 * 1024)).decode()
    one_big = json.dumps(base_request(attachments=[{"filename": "big.bin", "content": big}])).encode()
    for name, body in [
        ("1M empty attachments", million),
        ("50k bcc", bcc),
        ("10M-element metadata value", meta),
        ("one 22 MiB attachment (legitimate)", one_big),
    ]:
        for parallel in (1, 3):
            run_case(name, body, parallel)


if __name__ == "__main__":
    main()
