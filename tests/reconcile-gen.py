#!/usr/bin/python3
# tests/reconcile-gen.py DB SEED: a station's audit database in cardlicd's
# schema (the migrations of sql/, in order), with rows drawn at random from
# SEED, for check_ctl's differential test of cardlicctl reconcile against
# tests/reconcile-oracle.py (issue 12).  The rows are what reconcile reads
# (states, jobs, the licenses and credits in doubt that rows name, batch
# cards, counts, reasons); their hashes chain as the daemon's do
# (daemon/dbhash.c), so that cardlicctl merge takes them, and they are not
# signed, which reconcile does not look at.  The rows of one card's job
# share its job number, as the daemon writes them; a job may stop at its
# `requested` row (the daemon killed), and a later start may answer it
# with an `in-doubt` row of the same job.  Beside the daemon's habits they
# hold what a file may hold anyway: a row after a license's verdict, two
# resolutions of one credit in doubt, a row naming a seq that is no
# license, NULL readers, 'SPENT:' in capitals, counts that disagree with
# the rows.
#
# Batch cards by label (issue 18, case 8): from a point of the file on
# (a newer cardlicd, or from its first row), each insertion of a batch
# card is a `batch-in` row, and the counts carry the card's label in
# serial; before it, counts have none, as older files.  The batch cards
# are cards of their own, with a label, an ATR (two may share one) and a
# counter, moved between readers, pulled, put back, some never counted;
# now and then a count is typed in with another card's label.  One file
# in three is two stations merged (cardlicctl merge, in two rounds, so
# that their rows take turns in rowid order), with clocks apart, and now
# and then a station's clock steps back.
import glob
import hashlib
import os
import random
import sqlite3
import struct
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTL = os.path.join(TOP, "ctl", "cardlicctl")
# daemon/auditrow.h: the columns that the hash covers, in order.
HASHED = ["seq", "utc", "station", "job", "reader", "state", "reason",
          "model", "serial", "start_date", "end_date", "license_seq",
          "license", "batch_reader", "batch_atr", "batch_count", "sw",
          "ckr", "status", "timings"]
COLS = ["seq", "utc", "station", "job", "reader", "state", "reason", "model",
        "serial", "license_seq", "batch_reader", "batch_atr", "batch_count"]
READERS = ["Sim Line A 00 00", "Sim Line B 00 01", "Sim Line B 00 00"]
ATRS = ["3B88800149444F424154434817",
        "3B8F8001804F0CA0000003060300030000000068"]


def row_hash(prev, row):
    """daemon/dbhash.c, dbhash_row: SHA-256 over the previous hash, then
    each column's SQLite type, length and bytes."""
    h = hashlib.sha256(prev)
    for c in HASHED:
        v = row.get(c)
        if v is None:
            t, b = 5, b""
        elif isinstance(v, int):
            t, b = 1, str(v).encode()
        elif isinstance(v, bytes):
            t, b = 4, v
        else:
            t, b = 3, v.encode()
        h.update(struct.pack(">BI", t, len(b)))
        h.update(b)
    return h.digest()


def schema(path):
    if os.path.exists(path):
        os.unlink(path)
    db = sqlite3.connect(path)
    files = sorted(glob.glob(os.path.join(TOP, "sql",
                                          "[0-9][0-9][0-9]-*.sql")))
    for i, f in enumerate(files):
        with open(f) as fh:
            db.executescript(fh.read())
        db.execute("PRAGMA user_version = %d" % (i + 1))
    db.commit()
    return db


class Station:
    """One station's rows, drawn as its daemon would write them."""

    def __init__(self, rnd, name, day, labels_from):
        self.rnd, self.name, self.day = rnd, name, day
        self.rows, self.prev = [], b"\0" * 32
        self.minute = rnd.randint(0, 300)
        self.labels_from = labels_from
        self.licenses, self.doubts, self.unanswered = [], [], []
        self.job = 0
        # Which batch card is in each reader: an index in cards, or None.
        self.inside = {}

    def labelled(self):
        return len(self.rows) >= self.labels_from

    def add(self, state, reason="r", card=(None, None), lic=None,
            count=None, serial=None, job=None):
        rnd = self.rnd
        self.minute += 1
        # Now and then the clock steps back a little.
        t = self.minute - (rnd.randint(1, 90) if rnd.random() < 0.03 else 0)
        row = {"seq": len(self.rows) + 1,
               "utc": "2026-10-%02dT%02d:%02d:00.000Z" % (
                   self.day + t // 1440, (t // 60) % 24, t % 60),
               "station": self.name,
               "job": self.job if job is None else job,
               "reader": card[0] if state in ("batch-in", "counted") and
               card[0] is not None else
               "Sim Line T 00 %02d" % rnd.randint(2, 9),
               "state": state, "reason": reason,
               "model": b"CLSIM TARGET    ",
               "serial": serial if state == "counted" else
               (b"CL%08d" % rnd.randint(0, 99999999)).ljust(
                   16, rnd.choice([b" ", b"\0"])),
               "license_seq": lic, "batch_reader": card[0],
               "batch_atr": card[1], "batch_count": count}
        if state == "batch-in":
            row["job"] = 0
            row["model"] = row["serial"] = None
        self.rows.append(row)
        return row["seq"]


def draw(rnd, st, cards, legacy):
    """The rows of one station: jobs, batch cards inserted and pulled,
    counts.  cards: the batch cards (label, ATR, counter), shared by the
    stations of a merged file."""
    for st.job in range(1, rnd.randint(6, 121)):
        if st.labelled() and (rnd.random() < 0.12 or not st.inside):
            # A batch card inserted, taken from wherever it was.
            r = rnd.choice(READERS)
            i = rnd.randrange(len(cards))
            for k in list(st.inside):
                if st.inside[k] == i and rnd.random() < 0.8:
                    del st.inside[k]
            st.inside[r] = i
            st.add("batch-in", "batch card inserted", (r, cards[i]["atr"]))
            continue
        if st.labelled() and st.inside and rnd.random() < 0.03:
            # A reader left empty: its rows name no card of the file.
            del st.inside[rnd.choice(list(st.inside))]
        if st.labelled() and st.inside:
            r = rnd.choice(list(st.inside))
            b = cards[st.inside[r]]
            c = (r, b["atr"])
        else:
            c = rnd.choice(legacy)
            b = legacy_card(cards, c)
        job_rows(rnd, st, c, b, cards)


def legacy_card(cards, c):
    """The batch card behind (reader, ATR) in an older file: one each."""
    for b in cards:
        if b.get("legacy") == c:
            return b
    b = {"label": None, "atr": c[1], "counter": 0, "legacy": c}
    cards.append(b)
    return b


def job_rows(rnd, st, c, b, cards):
    k = rnd.random()
    if st.unanswered and rnd.random() < 0.1:
        # The daemon starts again: each request it left with no
        # outcome becomes an in-doubt row of the same job.
        for j, uc in st.unanswered:
            st.doubts.append(st.add("in-doubt", card=uc, job=j))
        st.unanswered = []
    if k < 0.04:
        # The daemon killed after its `requested` row: the batch card
        # may or may not have spent the credit.
        st.add("requested", card=c)
        if rnd.random() < 0.5:
            b["counter"] += 1
        st.unanswered.append((st.job, c))
    elif k < 0.45:
        st.add("requested", card=c)
        b["counter"] += 1
        g = st.add("generated", card=c, count=b["counter"])
        st.licenses.append(g)
        st.add("loaded", lic=g)
        st.add(rnd.choice(["verified"] * 5 + ["rejected"]), lic=g)
    elif k < 0.55:
        st.add("requested", card=c)
        b["counter"] += 1
        g = st.add("generated", card=c, count=b["counter"])
        st.licenses.append(g)
        st.add(rnd.choice(["failed", "loaded"]), lic=g)
    elif k < 0.62:
        st.add("requested", card=c)
        if rnd.random() < 0.5:
            b["counter"] += 1
        st.doubts.append(st.add("in-doubt", card=c))
    elif k < 0.70 and st.doubts:
        d = rnd.choice(st.doubts)
        st.add("resolved", reason=rnd.choice(
            ["spent: the counter rose", "SPENT: upper case",
             "Spent:", "unspent: it did not", "spent", "spentx: no"]),
            lic=d)
    elif k < 0.76 and st.licenses:
        # The card back for a license still pending, or one that
        # already had its verdict.
        g = rnd.choice(st.licenses)
        st.add("loaded", lic=g)
        st.add(rnd.choice(["verified", "rejected", "failed"]), lic=g)
    elif k < 0.84:
        count(rnd, st, c, b, cards)
    elif k < 0.88 and st.rows:
        # A row that names a seq which is no license.
        st.add(rnd.choice(["verified", "failed", "resolved"]),
               reason="spent: odd", lic=rnd.randint(1, len(st.rows)))
    elif k < 0.94:
        st.add("skipped")
    else:
        st.add("failed")


def count(rnd, st, c, b, cards):
    """An admin types in the counter of the batch card in c's reader:
    with its label in a newer file (now and then another card's), none
    in an older one; the number now and then wrong."""
    n = b["counter"] + rnd.choice([0, 0, 0, 0, 1, -1, 3])
    if not st.labelled() or b["label"] is None:
        if st.labelled() and b["label"] is None:
            return
        st.add("counted", reason="count typed in", card=c, count=n)
        return
    label = b["label"]
    if rnd.random() < 0.06:
        label = rnd.choice([x for x in cards if x["label"]])["label"]
    st.add("counted", reason="count typed in", card=c, count=n,
           serial=label.ljust(16, b" "))


def write(path, st, upto):
    """The station's rows up to upto into its own database, each hash
    chained to the row before."""
    db = sqlite3.connect(path)
    have = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    for row in st.rows[have:upto]:
        st.prev = row_hash(st.prev, row)
        db.execute("INSERT INTO audit (%s, hash) VALUES (%s)" % (
            ", ".join(COLS), ", ".join("?" * (len(COLS) + 1))),
            [row[c] for c in COLS] + [st.prev])
    db.commit()
    db.close()


def main():
    path, seed = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(seed)
    legacy = [(r, a) for r in READERS[:2] for a in ATRS] + [(None, None)]
    legacy = legacy[:rnd.randint(1, len(legacy))]
    cards = []
    for i in range(rnd.randint(1, 4)):
        # Two batch cards may share an ATR; one may never be counted.
        cards.append({"label": b"BC-%d" % (i + 1) if rnd.random() < 0.85
                      else None, "atr": rnd.choice(ATRS),
                      "counter": rnd.randint(0, 50)})
    # From where on the daemon writes batch-in rows and labels.
    labels_from = rnd.choice([0, 0, rnd.randint(1, 200), 10 ** 9])
    names = ["line-1"] if rnd.random() < 0.67 else ["line-1", "line-2"]
    stations = [Station(rnd, n, 1 + rnd.randint(0, 2) * (i > 0),
                        labels_from) for i, n in enumerate(names)]
    for st in stations:
        draw(rnd, st, cards, legacy)
    if len(stations) == 1:
        schema(path).close()
        write(path, stations[0], len(stations[0].rows))
        return
    if os.path.exists(path):
        os.unlink(path)
    parts = [path + ".%s" % st.name for st in stations]
    for p in parts:
        schema(p).close()
    # Two rounds: the rows of the stations take turns by rowid.
    for frac in (rnd.random(), 1.0):
        for st, p in zip(stations, parts):
            write(p, st, int(len(st.rows) * frac))
        subprocess.run([CTL, "merge", path] + parts, check=True,
                       stdout=subprocess.DEVNULL)
    for p in parts:
        os.unlink(p)


main()
