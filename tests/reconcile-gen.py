#!/usr/bin/python3
# tests/reconcile-gen.py DB SEED: a station's audit database in cardlicd's
# schema (the migrations of sql/, in order), with rows drawn at random from
# SEED, for check_ctl's differential test of cardlicctl reconcile against
# tests/reconcile-oracle.py (issue 12).  The rows are what reconcile reads
# (states, jobs, the licenses and credits in doubt that rows name, batch
# cards, counts, reasons); their hashes are random and they are not signed,
# which reconcile does not look at.  The rows of one card's job share its
# job number, as the daemon writes them; a job may stop at its `requested`
# row (the daemon killed), and a later start may answer it with an
# `in-doubt` row of the same job.  Beside the daemon's habits they hold what
# a file may hold anyway: a row after a license's verdict, two resolutions
# of one credit in doubt, a row naming a seq that is no license, NULL
# readers, 'SPENT:' in capitals, counts that disagree with the rows.
import glob
import os
import random
import sqlite3
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    path, seed = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(seed)
    if os.path.exists(path):
        os.unlink(path)
    db = sqlite3.connect(path)
    files = sorted(glob.glob(os.path.join(TOP, "sql", "[0-9][0-9][0-9]-*.sql")))
    for i, f in enumerate(files):
        with open(f) as fh:
            db.executescript(fh.read())
        db.execute("PRAGMA user_version = %d" % (i + 1))
    cards = [("Sim Line A 00 00", "3B88800149444F424154434817"),
             ("Sim Line A 00 00", "3B8F8001804F0CA0000003060300030000000068"),
             ("Sim Line B 00 01", "3B88800149444F424154434817"),
             (None, None)]
    cards = cards[:rnd.randint(1, len(cards))]
    rows = []
    licenses, doubts, any_rows, unanswered = [], [], [], []
    counter = {c: rnd.randint(0, 50) for c in cards}
    job = 0

    def add(state, reason="r", card=(None, None), lic=None, count=None,
            serial=None, j=None):
        seq = len(rows) + 1
        rows.append((seq, "2026-10-%02dT%02d:%02d:00.000Z" % (
            1 + seq // 500, (seq // 60) % 24, seq % 60), "line-1",
            job if j is None else j,
            "Sim Line T 00 %02d" % rnd.randint(2, 9), state, reason,
            b"CLSIM TARGET    ", serial or (b"CL%08d" % rnd.randint(
                0, 99999999)).ljust(16, rnd.choice([b" ", b"\0"])), lic,
            card[0], card[1], count,
            os.urandom(32)))
        any_rows.append(seq)
        return seq

    for job in range(1, rnd.randint(6, 121)):
        c = rnd.choice(cards)
        k = rnd.random()
        if unanswered and rnd.random() < 0.1:
            # The daemon starts again: each request it left with no
            # outcome becomes an in-doubt row of the same job.
            for j, uc in unanswered:
                doubts.append(add("in-doubt", card=uc, j=j))
            unanswered = []
        if k < 0.04:
            # The daemon killed after its `requested` row: the batch card
            # may or may not have spent the credit.
            add("requested", card=c)
            if rnd.random() < 0.5:
                counter[c] += 1
            unanswered.append((job, c))
        elif k < 0.45:
            add("requested", card=c)
            counter[c] += 1
            g = add("generated", card=c, count=counter[c])
            licenses.append(g)
            add("loaded", lic=g)
            add(rnd.choice(["verified"] * 5 + ["rejected"]), lic=g)
        elif k < 0.55:
            add("requested", card=c)
            counter[c] += 1
            g = add("generated", card=c, count=counter[c])
            licenses.append(g)
            add(rnd.choice(["failed", "loaded"]), lic=g)
        elif k < 0.62:
            add("requested", card=c)
            if rnd.random() < 0.5:
                counter[c] += 1
            doubts.append(add("in-doubt", card=c))
        elif k < 0.70 and doubts:
            d = rnd.choice(doubts)
            add("resolved", reason=rnd.choice(
                ["spent: the counter rose", "SPENT: upper case",
                 "Spent:", "unspent: it did not", "spent", "spentx: no"]),
                lic=d)
        elif k < 0.76 and licenses:
            # The card back for a license still pending, or one that
            # already had its verdict.
            g = rnd.choice(licenses)
            add("loaded", lic=g)
            add(rnd.choice(["verified", "rejected", "failed"]), lic=g)
        elif k < 0.84:
            add("counted", reason="count typed in", card=c,
                count=counter[c] + rnd.choice([0, 0, 0, 1, -1, 3]))
        elif k < 0.88 and any_rows:
            # A row that names a seq which is no license.
            add(rnd.choice(["verified", "failed", "resolved"]),
                reason="spent: odd", lic=rnd.choice(any_rows))
        elif k < 0.94:
            add("skipped")
        else:
            add("failed")
    db.executemany(
        "INSERT INTO audit (seq, utc, station, job, reader, state, reason, "
        "model, serial, license_seq, batch_reader, batch_atr, batch_count, "
        "hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
        "?13, ?14)", rows)
    db.commit()
    db.close()


main()
