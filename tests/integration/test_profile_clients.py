# SPDX-License-Identifier: MIT
"""The Profile API request forms that real programs send (docs/http-api.md, "Forms real
clients send", lists each with where it was seen): how they address a profile, how they
start and walk a listing, the parameter spellings they use, and the headers and credentials
they send. One case per form."""
import base64
import datetime
import http.client
import json
import urllib.parse

from common import Server, Store, run_tests

SPACE = "shop"
USERS = "/v1/spaces/%s/collections/users/profiles" % SPACE
ACCOUNTS = "/v1/spaces/%s/collections/accounts/profiles" % SPACE
EMAIL = "ada+shop@example.com"


def iso(minutes_ago):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def corpus():
    msgs = [{"type": "identify", "userId": "u-1", "anonymousId": "anon-1",
             "traits": {"email": EMAIL, "name": "Ada", "plan": "pro", "first name": "Ada"},
             "timestamp": iso(60)},
            {"type": "track", "userId": "u-1", "event": "Page Viewed", "timestamp": iso(50)},
            {"type": "track", "userId": "u-1", "event": "Order Completed",
             "properties": {"total": 5}, "timestamp": iso(40)},
            {"type": "track", "userId": "u-1", "event": "Signed Up", "timestamp": iso(30)},
            {"type": "identify", "userId": "u-1", "traits": {"phone": "+15555550123"},
             "timestamp": iso(25)},
            {"type": "group", "userId": "u-1", "groupId": "acct-1", "traits": {"name": "Acme"},
             "timestamp": iso(20)}]
    for i in range(2, 8):
        msgs.append({"type": "identify", "userId": "u-%d" % i, "traits": {"n": i},
                     "timestamp": iso(10 - i)})
    for i, m in enumerate(msgs):
        m["messageId"] = "m-%d" % i
    return "".join(json.dumps(m) + "\n" for m in msgs)


class Env:
    def __init__(self, *server_args):
        self.store = Store()
        self.store.ctl("space", "create", SPACE)
        self.store.ctl("ingest", SPACE, "-", input=corpus())
        self.token = self.store.ctl("token", "create", SPACE).stdout.strip()
        self.srv = Server(self.store, *server_args)

    def get(self, path, headers=None, auth="basic", body=None):
        h = dict(headers or {})
        if auth == "basic":
            h["Authorization"] = "Basic " + base64.b64encode((self.token + ":").encode()).decode()
        elif auth is not None:
            h["Authorization"] = auth
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
        conn.request("GET", path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, r.headers, json.loads(data) if data else None

    def ok(self, path, **kw):
        st, _, body = self.get(path, **kw)
        assert st == 200, (path, st, body)
        return body

    def close(self):
        self.srv.stop()
        self.store.close()


def with_env(*server_args):
    def wrap(fn):
        def run():
            e = Env(*server_args)
            try:
                fn(e)
            finally:
                e.close()
        run.__name__ = fn.__name__
        return run
    return wrap


@with_env()
def addressing_forms(e):
    """type:value raw (nearly every program), with a raw `@` (Fides, Segment's examples), the
    value percent-encoded by encodeURIComponent (`%40`, `%2B`: Segment Actions, Twilio
    plugins), the whole ident encoded so the colon is `%3A` (encodeURIComponent("type:value")),
    a bare segment_id and `segment_id:<id>` (Voucherify's initial sync), and accounts by
    group_id."""
    sid = e.ok(USERS + "/user_id:u-1/metadata")
    want = e.ok(USERS + "/user_id:u-1/traits")["traits"]
    assert want["name"] == "Ada", want
    enc = urllib.parse.quote(EMAIL, safe="")
    assert "%40" in enc and "%2B" in enc
    segment_id = e.ok(USERS + "/user_id:u-1/traits")["cursor"]["url"].split("/")[-2]
    assert segment_id.startswith("use_"), segment_id
    for ident in ("email:" + EMAIL, "email:" + enc, urllib.parse.quote("email:" + EMAIL, safe=""),
                  urllib.parse.quote("user_id:u-1", safe=""), segment_id,
                  "segment_id:" + segment_id, "USER_ID:u-1",
                  "anonymous_id:anon-1"):
        got = e.ok(USERS + "/" + ident + "/traits")["traits"]
        assert got == want, (ident, got)
    assert sid["metadata"]["first_message_id"] == "m-0", sid
    acc = e.ok(ACCOUNTS + "/group_id:acct-1/traits")
    assert acc["traits"] == {"name": "Acme"}, acc
    # the legacy /v1/namespaces/ prefix of Segment's FAQ
    assert e.ok(USERS.replace("/spaces/", "/namespaces/") + "/user_id:u-1/traits")["traits"] \
        == want
    # a profile with nothing after it: 404 that says what to add
    st, _, body = e.get(USERS + "/user_id:u-1")
    assert st == 404 and "/traits" in body["error"]["message"], body
    st, _, body = e.get(USERS + "/segment_id:use_nope/traits")
    assert st == 404, body


@with_env()
def parameter_spellings(e):
    """`include` as raw commas (axios, hand-built URLs), `%2C` (requests, URLSearchParams, Go)
    and `+` for a space (form encoding); `limit=200` on traits and `limit=25` on external ids
    (Segment Actions); `class=audience` (Segment's docs); `verbose=true` on traits, external
    ids, metadata and events; `start`, `end`, `sort`, `exclude` on events; and the
    parameters a client copies from the cursor URL in Segment's own example
    (`%3Acollection`, `%3Aid`, `%3Anamespace`), which are ignored."""
    base = USERS + "/user_id:u-1"
    for q in ("include=name,plan", "include=name%2Cplan", "include=plan,name,missing"):
        assert e.ok(base + "/traits?" + q)["traits"] == {"name": "Ada", "plan": "pro"}, q
    assert e.ok(base + "/traits?include=first+name")["traits"] == {"first name": "Ada"}
    assert len(e.ok(base + "/traits?limit=200")["traits"]) == 5
    assert e.ok(base + "/traits?class=audience")["traits"] == {}
    v = e.ok(base + "/traits?verbose=true&include=plan")["traits"]["plan"]
    assert v["value"] == "pro" and "updated_at" in v, v
    ids = e.ok(base + "/external_ids?limit=25&verbose=true")["data"]
    assert {(x["type"], x["id"]) for x in ids} >= {("user_id", "u-1"), ("email", EMAIL)}, ids
    assert e.ok(base + "/external_ids?include=email")["data"][0]["id"] == EMAIL
    assert e.ok(base + "/metadata?verbose=true")["metadata"]["created_at"]
    names = [x["event"] for x in e.ok(base + "/events?verbose=true&limit=100")["data"]]
    assert names == ["Signed Up", "Order Completed", "Page Viewed"], names
    names = [x["event"] for x in e.ok(base + "/events?sort=asc&exclude=Page+Viewed")["data"]]
    assert names == ["Order Completed", "Signed Up"], names
    names = [x["event"] for x in e.ok(base + "/events?include=Page%20Viewed,Signed+Up")["data"]]
    assert names == ["Signed Up", "Page Viewed"], names
    start = urllib.parse.quote(iso(45))
    names = [x["event"] for x in e.ok(base + "/events?start=" + start)["data"]]
    assert names == ["Signed Up", "Order Completed"], names
    copied = ("?%3Acollection=users&%3Aid=user_id%3Au-1&%3Anamespace=" + SPACE +
              "&limit=2&next=")
    body = e.ok(base + "/traits" + copied)
    assert len(body["traits"]) == 2 and body["cursor"]["has_more"] is True, body


def walk(e, first, param):
    """Walks a listing the way a client builds it: `param`=cursor.next until has_more is
    false or next is empty. Returns the segment ids in order."""
    seen, path = [], first
    for _ in range(50):
        body = e.ok(path)
        seen += [d["segment_id"] for d in body["data"]]
        cur = body["cursor"]
        if not cur["has_more"] or not cur["next"]:
            assert cur["next"] == "" and cur["has_more"] is False, cur
            return seen
        path = USERS + "?limit=2&%s=%s" % (param, urllib.parse.quote(cur["next"], safe=""))
    raise AssertionError("the listing never ended")


@with_env()
def listing_starts_and_walks(e):
    """Starting a listing with no cursor, `next=` empty, `next=0` (Voucherify's initial sync)
    or `cursor=` empty (a Supabase import that names the cursor `cursor`); walking it with
    `next=` or `cursor=`; and `include=traits` on the listing (ignored: the listing returns
    segment ids and metadata)."""
    every = walk(e, USERS + "?limit=2", "next")
    assert len(every) == 7 and len(set(every)) == 7, every
    for start in ("&next=", "&next=0", "&cursor=", "&cursor=0", "&include=traits&cursor="):
        assert walk(e, USERS + "?limit=2" + start, "next") == every, start
    assert walk(e, USERS + "?limit=2", "cursor") == every
    st, _, body = e.get(USERS + "?limit=2&cursor=garbage")
    assert st == 400 and "`cursor`" in body["error"]["message"], body


@with_env()
def following_cursor_url(e):
    """Clients that follow `cursor.url` as given (Fides takes its path and query; others add
    `next` to it): the URL names the canonical profile and the same list."""
    body = e.ok(USERS + "/user_id:u-1/events?limit=1")
    names = [body["data"][0]["event"]]
    while body["cursor"]["has_more"]:
        url = body["cursor"]["url"]
        assert url.startswith("/v1/spaces/%s/" % SPACE), url
        body = e.ok(url + "?limit=1&next=" + urllib.parse.quote(body["cursor"]["next"]))
        names.append(body["data"][0]["event"])
    assert names == ["Signed Up", "Order Completed", "Page Viewed"], names
    assert body["cursor"]["next"] == "", body


@with_env("--public-url", "https://profiles.example.com/")
def absolute_cursor_url(e):
    """With --public-url the cursor URL is absolute, for clients that call
    `axios.get(cursor.url)` directly."""
    cur = e.ok(USERS + "?limit=1")["cursor"]
    assert cur["url"] == "https://profiles.example.com" + USERS, cur
    parts = urllib.parse.urlsplit(cur["url"])
    body = e.ok(parts.path + "?limit=1&next=" + urllib.parse.quote(cur["next"]))
    assert len(body["data"]) == 1, body


@with_env()
def credentials_and_headers(e):
    """Basic base64(token:) (Segment's docs), base64(token) with no colon (a SendGrid function
    in Segment's functions library), `Bearer token` (one program); the headers clients send:
    `Accept-Encoding: gzip, deflate, br` (Go, requests, axios defaults) or the non-standard
    `zlib` (Voucherify), `Content-Type: application/json` on a GET (Segment's Node sample),
    `Accept: application/json`, an explicit `Host`, and a GET with a body."""
    path = USERS + "/user_id:u-1/traits"
    plain = "Basic " + base64.b64encode(e.token.encode()).decode()
    for auth in ("basic", plain, "Bearer " + e.token, "bearer  " + e.token + " "):
        assert e.ok(path, auth=auth)["traits"]["name"] == "Ada", auth
    for auth in (None, "Bearer ", "Bearer wrong", "Bearer a b", "Token " + e.token):
        st, _, body = e.get(path, auth=auth)
        assert st == 401 and body["error"]["code"] == "authentication_error", (auth, body)
    for h in ({"Accept-Encoding": "gzip, deflate, br"}, {"Accept-Encoding": "zlib"},
              {"Content-Type": "application/json", "Accept": "application/json"},
              {"Host": "profiles.segment.com", "User-Agent": "Segment (Actions)"}):
        st, headers, body = e.get(path, headers=h)
        assert st == 200 and body["traits"]["name"] == "Ada", (h, st, body)
        assert headers.get("Content-Encoding") in (None, "identity"), headers
    st, _, body = e.get(path, headers={"Content-Type": "application/json"}, body='{"q":1}')
    assert st == 200 and body["traits"]["name"] == "Ada", (st, body)


if __name__ == "__main__":
    run_tests([addressing_forms, parameter_spellings, listing_starts_and_walks,
               following_cursor_url, absolute_cursor_url, credentials_and_headers])
