#!/usr/bin/python3
# tests/reconcile-oracle.py DB: what `cardlicctl reconcile` must print for
# DB (its exit status too), asked of the views and the audit rows in SQL,
# as cardlicctl asked them before its reconcile became one pass over the
# table in C (issue 12).  The tests compare the two byte for byte: the
# views are what the answers mean, and this is a second way to them that
# shares no code with ctl/reconcile.c.
#
# Plain ASCII only: a byte that cardlicctl would escape stops the oracle
# (exit 3) rather than guess its escape.  Times are UTC, as
# cardlicctl prints them without --local.
import sqlite3
import sys

TIME = "replace(substr(%s, 1, 19), 'T', ' ') || 'Z'"

# A `requested` row that no later row of its station and job answers: a
# license asked for, with no outcome (cardlicd stopped after asking, or is
# issuing that card now).  reconcile counts it as a credit in doubt that
# nobody has decided on.  The daemon's own test (db.c, db_next_unanswered).
UNANSWERED = ("%(a)s.state = 'requested' AND NOT EXISTS (SELECT 1 FROM audit "
              "x WHERE x.station = %(a)s.station AND x.job = %(a)s.job AND "
              "x.seq > %(a)s.seq)")


def text(v):
    """A column for a human, as cardlicctl's q_text shows it."""
    if v is None:
        return "-"
    if isinstance(v, bytes):
        v = v.decode("ascii")
    v = str(v)
    for ch in v:
        if not (0x20 <= ord(ch) < 0x7F):
            sys.stderr.write("oracle: a byte it cannot show: %r\n" % v)
            sys.exit(3)
    return v.replace("\\", "\\\\")


def txt(v):
    """A TEXT value read as bytes, to bind as TEXT again (not a BLOB)."""
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) \
        else v


def spent_words(n):
    if n[1] == 0:
        return "%d generated" % n[0]
    return "%d generated, %d in doubt resolved as spent" % (n[0], n[1])


def count_line(k, seq, at, count, why):
    print("    count #%s %s: %s, %s" % (text(k[seq]), text(k[at]),
                                         text(k[count]), text(k[why])))


def count_check(k, n, doubts):
    rise = (k[4] or 0) - (k[8] or 0)
    spent, undecided = n[0] + n[1], n[2]
    if rise == spent and undecided == 0:
        print("  %s %s (ATR %s): count #%s %s: %s, up %d since #%s: "
              "agrees with the rows (%s)" % (
                  text(k[0]), text(k[1]), text(k[2]), text(k[3]),
                  text(k[5]), text(k[4]), rise, text(k[7]),
                  spent_words(n)))
        return 0
    maybe = spent <= rise <= spent + undecided
    print("  %s on %s %s (ATR %s):" % (
        "POSSIBLE DIFFERENCE" if maybe else "DIFFERENCE", text(k[0]),
        text(k[1]), text(k[2])))
    count_line(k, 7, 9, 8, 10)
    count_line(k, 3, 5, 4, 6)
    if rise < 0:
        print("    the counter went down, by %d: not the same batch "
              "card, or a count typed in wrong" % -rise)
    else:
        print("    the counter rose by %d; the rows between say %d were "
              "spent (%s)" % (rise, spent, spent_words(n)))
    if undecided > 0:
        print("    and %d credit(s) in doubt are not decided (%s): "
              "possibly %s" % (undecided, doubts,
                               "those; decide them with cardlicctl resolve"
                               if maybe else "spent, still no match"))
    if not maybe and rise > spent + undecided:
        print("    %d credit(s) spent that no row shows"
              % (rise - spent - undecided))
    elif not maybe and rise >= 0:
        print("    %d credit(s) in the rows that the counter did not "
              "count" % (spent - rise))
    return 0 if maybe else 1


def count_rows(db, k, p, s):
    # "IS", where the old reconcile had "=": a count with no reader (never
    # one of cardlicd's) is held against the rows with no reader, as
    # GROUP BY puts NULLs together.  The rest is the old SQL.
    # Not decided: a credit in doubt with no resolution, or a request
    # with no outcome.
    open_ = ("((a.state = 'in-doubt' AND r.seq IS NULL) OR (%s))"
             % (UNANSWERED % {"a": "a"}))
    r = db.execute(
        "SELECT coalesce(sum(a.state = 'generated'), 0), "
        "coalesce(sum(a.state = 'in-doubt' AND r.reason LIKE 'spent:%'), "
        "0), coalesce(sum(" + open_ + "), 0), "
        "group_concat(CASE WHEN " + open_ + " "
        "THEN '#' || a.seq END, ', ') FROM (SELECT * FROM audit "
        "ORDER BY seq) a LEFT JOIN audit r ON "
        "a.state = 'in-doubt' AND r.station = a.station AND r.state = "
        "'resolved' AND r.license_seq = a.seq WHERE a.station = ?1 AND "
        "a.batch_reader IS ?2 AND a.batch_atr IS ?3 AND a.seq > ?4 AND "
        "a.seq < ?5 AND a.state IN ('generated', 'in-doubt', "
        "'requested')",
        (txt(k[0]), txt(k[1]), txt(k[2]), p,
         s if s > 0 else 2 ** 63 - 1)).fetchone()
    d = r[3].decode() if isinstance(r[3], bytes) else (r[3] or "")
    return [r[0], r[1], r[2]], d[:399]


def counts(db):
    diffs = shown = 0
    q = db.execute(
        "SELECT station, batch_reader, batch_atr, seq, batch_count, t, "
        "reason, lag(seq) OVER w, lag(batch_count) OVER w, lag(t) OVER w, "
        "lag(reason) OVER w, lead(seq) OVER w IS NULL FROM (SELECT *, %s "
        "AS t FROM audit WHERE state = 'counted') WINDOW w AS (PARTITION "
        "BY station, batch_reader, batch_atr ORDER BY seq) ORDER BY "
        "station, batch_reader, batch_atr, seq" % (TIME % "utc"))
    for k in q.fetchall():
        if shown == 0:
            print("\nbatch card counters (cardlicctl batch-count):")
        shown += 1
        if k[7] is None:
            print("  %s %s (ATR %s): count #%s %s: %s, the first: the "
                  "baseline" % (text(k[0]), text(k[1]), text(k[2]),
                                text(k[3]), text(k[5]), text(k[4])))
        else:
            n, doubts = count_rows(db, k, k[7], k[3])
            diffs += count_check(k, n, doubts)
        if k[11]:
            n, doubts = count_rows(db, k, k[3], 0)
            if n[0] + n[1] + n[2] > 0:
                print("    since #%s: %d spent (%s)%s%s%s; the counter "
                      "should now say %d" % (
                          text(k[3]), n[0] + n[1], spent_words(n),
                          ", and in doubt not decided: " if n[2] > 0
                          else "", doubts,
                          " (possibly more)" if n[2] > 0 else "",
                          (k[4] or 0) + n[0] + n[1]))
    return diffs


def main():
    db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
    db.text_factory = bytes
    db.execute("BEGIN")
    print("%-10s  %-20s  %-28s  %5s  %8s  %7s  %8s  %8s  %4s" % (
        "STATION", "BATCH READER", "BATCH ATR", "SPENT", "VERIFIED",
        "PENDING", "REJECTED", "IN-DOUBT", "LOST"))
    # The requests with no outcome join issuance's lines as lines of
    # their own ('unanswered', a state that no row has).
    for r in db.execute(
            "SELECT station, batch_reader, batch_atr, "
            "sum(state IN ('generated', 'loaded', 'failed', 'verified', "
            "'rejected')) + sum(state = 'in-doubt') + sum(state = "
            "'unanswered') + sum(state = "
            "'resolved' AND last_reason LIKE 'spent:%'), "
            "sum(state = 'verified'), "
            "sum(state IN ('generated', 'loaded', 'failed')), "
            "sum(state = 'rejected'), sum(state = 'in-doubt') + "
            "sum(state = 'unanswered'), "
            "sum(state = 'resolved' AND last_reason LIKE 'spent:%') FROM "
            "(SELECT station, batch_reader, batch_atr, state, last_reason "
            "FROM issuance WHERE license_seq IS NOT NULL OR state IN "
            "('in-doubt', 'resolved') UNION ALL SELECT station, "
            "batch_reader, batch_atr, 'unanswered', NULL FROM audit a "
            "WHERE " + UNANSWERED % {"a": "a"} + ") GROUP BY station, "
            "batch_reader, batch_atr ORDER BY 1, 2, 3"):
        print("%-10s  %-20s  %-28s  %5d  %8d  %7d  %8d  %8d  %4d" % (
            text(r[0]), text(r[1]), text(r[2]), r[3], r[4], r[5], r[6],
            r[7], r[8]))
    diffs = counts(db)
    flags = 0
    for r in db.execute(
            "SELECT station, license_seq, serial_text, batch_reader, "
            "generated_utc FROM pending ORDER BY station, license_seq"):
        if flags == 0:
            print("\ncredits with no card to show for them:")
        flags += 1
        print("  %s #%s: license for %s from %s (%s) still pending: the "
              "card has not come back" % tuple(text(v) for v in r))
    for r in db.execute(
            "SELECT station, seq, serial_text, batch_reader, reason FROM "
            "in_doubt WHERE resolved_seq IS NULL ORDER BY station, seq"):
        if flags == 0:
            print("\ncredits with no card to show for them:")
        flags += 1
        print("  %s #%s: credit in doubt for card %s, batch card in %s: "
              "%s\n    decide: cardlicctl resolve %s spent|unspent REASON"
              % (text(r[0]), text(r[1]), text(r[2]), text(r[3]),
                 text(r[4]), text(r[1])))
    for r in db.execute(
            "SELECT station, seq, serial_text, batch_reader, utc FROM "
            "audit_text a WHERE "
            + UNANSWERED % {"a": "a"} + " ORDER BY station, seq"):
        if flags == 0:
            print("\ncredits with no card to show for them:")
        flags += 1
        print("  %s #%s: request with no outcome: a license asked for "
              "card %s from the batch card in %s (%s), a credit in doubt\n"
              "    cardlicd stopped after asking (its next start records "
              "the credit as in doubt, to decide with cardlicctl "
              "resolve), or it is issuing this card now"
              % tuple(text(v) for v in r))
    if diffs + flags == 0:
        print("\nevery credit spent is accounted for")
    elif diffs > 0:
        print("\n%d difference(s) between the batch cards' counters and "
              "the rows" % diffs)
    sys.stdout.flush()
    sys.exit(0 if diffs + flags == 0 else 1)


main()
