# SPDX-License-Identifier: MIT
"""Resolution quality against gen_events' truth file (docs/benchmarks.md, Resolution quality).

Standard library only; used by tools/bench.py and tests/integration/test_quality.py.

- Precision: of the pairs of messages the store put in one profile, the share that belong to
  one person (the truth file's second column; the QA account counts as one).
- Recall: of the pairs of one person's messages that a chain of that person's own identifiers
  joins, the share the store put in one profile. Pairs nothing joins (an anonymous browser
  that never signed in, a value other people use too, a junk value) no method can find, so
  they are left out.
Group calls are left out (they resolve accounts too). A message that resolved to no profile
counts as a profile of its own.
"""
import collections
import json
import subprocess

# values the generator sends as junk; they never join anything in the truth
JUNK = {"null", "0", "undefined", "-1", "anonymous", "00000", "none", "nil", "nan"}


def message_ids(m, keep_junk=False):
    """The identifiers of a message as the default extraction sees them (users only), junk
    values left out unless `keep_junk`."""
    ids = []
    for key, typ in (("userId", "user_id"), ("anonymousId", "anonymous_id")):
        v = m.get(key)
        if isinstance(v, (str, int)) and str(v) != "":
            ids.append((typ, str(v)))
    dev = (m.get("context") or {}).get("device") or {}
    if dev.get("type") in ("ios", "android"):
        if dev.get("id"):
            ids.append((dev["type"] + ".id", str(dev["id"])))
        if dev.get("token"):
            ids.append((dev["type"] + ".push_token", str(dev["token"])))
    for src in ((m.get("traits") or {}) if m.get("type") == "identify" else {},
                (m.get("context") or {}).get("traits") or {}):
        if isinstance(src.get("email"), str):
            ids.append(("email", src["email"].strip().lower()))
    return ids if keep_junk else [i for i in ids if i[1].lower() not in JUNK]


def load(corpus, truth_file):
    """(messages without group calls, their truth labels)."""
    truth = {}
    with open(truth_file) as f:
        for line in f:
            mid, who = line.rstrip("\n").split("\t")
            truth[mid] = who
    msgs, labels = [], []
    with open(corpus) as f:
        for line in f:
            m = json.loads(line)
            if m.get("type") == "group":
                continue
            msgs.append(m)
            labels.append(truth[m["messageId"]])
    return msgs, labels


class _Sets:
    """Union-find over hashable items."""

    def __init__(self):
        self.parent = {}

    def find(self, x):
        parent = self.parent
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def linkable(msgs, labels):
    """Per message: (person, component) where components join one person's messages through
    values only that person ever sent."""
    users = collections.defaultdict(set)
    for m, who in zip(msgs, labels):
        for i in message_ids(m):
            users[i].add(who)
    sets = _Sets()
    for k, m in enumerate(msgs):
        for i in message_ids(m):
            if len(users[i]) == 1:
                sets.join(i, ("msg", k))
    return [(who, sets.find(("msg", k))) for k, who in enumerate(labels)]


def _pairs(counter):
    return sum(n * (n - 1) // 2 for n in counter.values())


def pairwise(pred, truth):
    """(precision, recall) of clusters `pred` against `truth` (labels per message)."""
    both = collections.Counter(zip(pred, truth))
    tp, pp, tt = _pairs(both), _pairs(collections.Counter(pred)), _pairs(collections.Counter(truth))
    return (tp / pp if pp else 1.0), (tp / tt if tt else 1.0)


def store_assignment(profilectl, data, space):
    """messageId -> segment_id, and segment_id -> its identifiers, from export --messages."""
    out = subprocess.run([profilectl, "--data", data, "export", space, "--collection", "users",
                          "--messages"], capture_output=True, text=True, check=True).stdout
    owner, ids = {}, {}
    for line in out.splitlines():
        p = json.loads(line)
        ids[p["segment_id"]] = ["%s:%s" % (x["type"], x["id"]) for x in p["external_ids"]]
        for mid in p["message_ids"]:
            owner[mid] = p["segment_id"]
    return owner, ids


def naive_assignment(msgs):
    """Merge on any shared identifier, as warehouse tools do: junk values included."""
    sets = _Sets()
    for k, m in enumerate(msgs):
        for i in message_ids(m, keep_junk=True):
            sets.join(i, ("msg", k))
    return [sets.find(("msg", k)) for k in range(len(msgs))]


def evaluate(pred, msgs, labels, ids=None, big=100):
    """Precision, recall, profile count and the profiles of over `big` messages, each with
    its size, how many people it mixes and (with `ids`) its identifiers."""
    precision, _ = pairwise(pred, labels)
    _, recall = pairwise(pred, linkable(msgs, labels))
    sizes = collections.Counter(pred)
    people = collections.defaultdict(set)
    for p, who in zip(pred, labels):
        people[p].add(who)
    users = collections.defaultdict(set)  # "type:value" -> the people who sent it
    for m, who in zip(msgs, labels):
        for typ, value in message_ids(m):
            users["%s:%s" % (typ, value)].add(who)

    def behind(p):
        """The profile's identifiers, those several people sent first, with their count."""
        own = (ids or {}).get(p, [])
        shared = sorted((i for i in own if len(users.get(i, ())) > 1),
                        key=lambda i: -len(users[i]))
        return ["%s (%d people)" % (i, len(users[i])) for i in shared] + \
            [i for i in own if i not in shared]
    large = sorted(((n, p, len(people[p]), behind(p)) for p, n in sizes.items() if n > big),
                   reverse=True)
    return {"precision": precision, "recall": recall, "profiles": len(sizes), "large": large}


def store_quality(profilectl, data, space, msgs, labels, big=100):
    owner, ids = store_assignment(profilectl, data, space)
    pred = [owner.get(m["messageId"], "unresolved:" + m["messageId"]) for m in msgs]
    return evaluate(pred, msgs, labels, ids, big)


def naive_quality(msgs, labels, big=100):
    pred = naive_assignment(msgs)
    return evaluate(pred, msgs, labels, None, big)
