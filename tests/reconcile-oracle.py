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
#
# Batch cards by label (issue 18, case 8): a credit row belongs to the
# insertion of its batch card, the last `batch-in` row of its station and
# reader before it (else, before any such row, to its station, reader and
# ATR, as before); a count with a label (in serial) names the insertion
# of its reader then, and the first count of an insertion names it.  A
# label's counts are ordered in time: the latest utc of their station so
# far, then the station, then seq (in one station, seq alone).
import sqlite3
import sys

TIME = "replace(substr(%s, 1, 19), 'T', ' ') || 'Z'"

# Every row with its place in time (eff) and its insertion (bin, or lr
# and la before any batch-in row of its reader), the label that named
# that insertion (label), and, for a count with a label, the label of
# the first count of its insertion (owner).
BASE = """WITH b AS (SELECT *,
    max(utc) OVER (PARTITION BY station ORDER BY seq) AS eff,
    max(CASE WHEN state = 'batch-in' AND batch_reader IS NOT NULL THEN seq
        END) OVER (PARTITION BY station, batch_reader ORDER BY seq ROWS
        BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bin
    FROM audit),
i AS (SELECT *, CASE WHEN bin IS NULL THEN batch_reader END AS lr,
    CASE WHEN bin IS NULL THEN batch_atr END AS la FROM b),
lc AS (SELECT *, first_value(serial) OVER w AS owner,
    first_value(seq) OVER w AS owner_seq FROM i
    WHERE state = 'counted' AND serial IS NOT NULL
    WINDOW w AS (PARTITION BY station, bin, lr, la ORDER BY seq)),
own AS (SELECT DISTINCT station, bin, lr, la, owner, owner_seq FROM lc),
il AS (SELECT i.*, own.owner AS label FROM i LEFT JOIN own
    ON own.station = i.station AND own.bin IS i.bin AND own.lr IS i.lr
    AND own.la IS i.la),
cr AS (SELECT station, seq, eff, label, state = 'generated' AS gen,
    CASE WHEN state = 'in-doubt' THEN (SELECT count(*) FROM audit r
        WHERE r.station = il.station AND r.state = 'resolved'
        AND r.license_seq = il.seq AND r.reason LIKE 'spent:%%') ELSE 0
        END AS spent,
    (state = 'in-doubt' AND NOT EXISTS (SELECT 1 FROM audit r
        WHERE r.station = il.station AND r.state = 'resolved'
        AND r.license_seq = il.seq)) OR (%s) AS undecided
    FROM il WHERE state IN ('generated', 'in-doubt', 'requested'))
"""

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


def label_text(v):
    """A label as cardlicctl shows it: its bytes, trailing spaces and NULs
    dropped."""
    return text(v.rstrip(b" \0") if isinstance(v, bytes) else v)


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
    """The counts with no label, as before (station, reader and ATR): the
    differences, and how many lines were shown."""
    diffs = shown = 0
    q = db.execute(
        "SELECT station, batch_reader, batch_atr, seq, batch_count, t, "
        "reason, lag(seq) OVER w, lag(batch_count) OVER w, lag(t) OVER w, "
        "lag(reason) OVER w, lead(seq) OVER w IS NULL FROM (SELECT *, %s "
        "AS t FROM audit WHERE state = 'counted' AND serial IS NULL) "
        "WINDOW w AS (PARTITION "
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
    return diffs, shown


def seg(db, label, p, k, ref):
    """The credits after count p (and before count k, unless None) of the
    insertions that label names, and of those that no label names: as
    count_rows, and the others' number and list."""
    cond = "(eff, station, seq) > (?2, ?3, ?4)"
    args = [label, txt(p[0]), txt(p[1]), p[2], txt(ref)]
    if k is not None:
        cond += " AND (eff, station, seq) < (?6, ?7, ?8)"
        args += [txt(k[0]), txt(k[1]), k[2]]
    name = ("CASE WHEN station IS ?5 THEN '#' || seq ELSE '#' || seq || "
            "' of ' || station END")
    base = BASE % (UNANSWERED % {"a": "il"})
    r = db.execute(
        base + ", x AS (SELECT * FROM cr WHERE label = ?1 AND " + cond +
        "), y AS (SELECT * FROM cr WHERE label IS NULL AND gen + spent + "
        "undecided > 0 AND " + cond + ") SELECT (SELECT coalesce(sum(gen), "
        "0) FROM x), (SELECT coalesce(sum(spent), 0) FROM x), (SELECT "
        "coalesce(sum(undecided), 0) FROM x), (SELECT group_concat(n, ', ') "
        "FROM (SELECT " + name + " AS n FROM x WHERE undecided ORDER BY "
        "station, seq)), (SELECT coalesce(sum(gen + spent + undecided), 0) "
        "FROM y), (SELECT group_concat(n, ', ') FROM (SELECT " + name +
        " AS n FROM y ORDER BY station, seq))", args).fetchone()

    def lst(v):
        return (v.decode() if isinstance(v, bytes) else (v or ""))[:399]
    return [r[0], r[1], r[2]], lst(r[3]), r[4], lst(r[5])


def label_words(k):
    return "%s (in %s %s, ATR %s)" % (label_text(k[0]), text(k[1]),
                                      text(k[7]), text(k[8]))


def count_name(k, ref):
    if k[1] == ref:
        return "#%s" % text(k[2])
    return "#%s of %s" % (text(k[2]), text(k[1]))


def lcount_line(k):
    print("    count #%s %s, in %s %s: %s, %s" % (
        text(k[2]), text(k[5]), text(k[1]), text(k[7]), text(k[4]),
        text(k[6])))


def lcount_check(db, p, k):
    """0 agrees, 1 a difference, 2 a possible one."""
    n, doubts, other, others = seg(db, k[0], (p[3], p[1], p[2]),
                                   (k[3], k[1], k[2]), k[1])
    rise = (k[4] or 0) - (p[4] or 0)
    known, undecided = n[0] + n[1], n[2]
    if rise == known and undecided == 0:
        print("  batch card %s: count #%s %s: %s, up %d since %s: agrees "
              "with the rows (%s)" % (
                  label_words(k), text(k[2]), text(k[5]), text(k[4]), rise,
                  count_name(p, k[1]), spent_words(n)))
        return 0
    maybe = known <= rise <= known + undecided + other
    print("  %s on batch card %s:" % (
        "POSSIBLE DIFFERENCE" if maybe else "DIFFERENCE", label_words(k)))
    lcount_line(p)
    lcount_line(k)
    if rise < 0:
        print("    the counter went down, by %d: not the same batch "
              "card, or a count typed in wrong" % -rise)
    else:
        print("    the counter rose by %d; the rows between say %d were "
              "spent (%s)" % (rise, known, spent_words(n)))
    if undecided > 0:
        print("    and %d credit(s) in doubt are not decided (%s): "
              "possibly %s" % (undecided, text(doubts),
                               "those; decide them with cardlicctl resolve"
                               if maybe else "spent, still no match"))
    if other > 0:
        print("    and %d credit(s) were spent between the two counts on "
              "batch cards with no label (%s): possibly %s" % (
                  other, text(others),
                  "this card's; count each batch card (batch-count "
                  "--card) when it is inserted" if maybe else
                  "this card's, still no match"))
    if not maybe and rise > known + undecided + other:
        print("    %d credit(s) spent that no row shows"
              % (rise - known - undecided - other))
    elif not maybe and rise >= 0:
        print("    %d credit(s) in the rows that the counter did not "
              "count" % (known - rise))
    return 2 if maybe else 1


def label_since(db, k):
    n, doubts, other, others = seg(db, k[0], (k[3], k[1], k[2]), None, k[1])
    if n[0] + n[1] + n[2] + other == 0:
        return
    print("    since #%s: %d spent (%s)%s%s%s%s%s%s; the counter should "
          "now say %d" % (
              text(k[2]), n[0] + n[1], spent_words(n),
              ", and in doubt not decided: " if n[2] > 0 else "",
              text(doubts), " (possibly more)" if n[2] > 0 else "",
              ", and on batch cards with no label: " if other > 0 else "",
              text(others), " (possibly this card's)" if other > 0 else "",
              (k[4] or 0) + n[0] + n[1]))


def labels(db, shown):
    """The counts with a label, label by label in time order, then the
    counts that name an insertion that an earlier count named otherwise.
    The differences and the possible ones."""
    diffs = maybes = 0
    base = BASE % (UNANSWERED % {"a": "il"})
    cols = ("serial, station, seq, eff, batch_count, %s, reason, "
            "batch_reader, batch_atr" % (TIME % "utc"))
    prev = None
    for k in db.execute(base + "SELECT " + cols + " FROM lc WHERE serial = "
                        "owner ORDER BY serial, eff, station, seq"):
        if shown == 0:
            print("\nbatch card counters (cardlicctl batch-count):")
        shown += 1
        if prev is not None and prev[0] != k[0]:
            label_since(db, prev)
            prev = None
        if prev is None:
            print("  batch card %s: count #%s %s: %s, the first: the "
                  "baseline" % (label_words(k), text(k[2]), text(k[5]),
                                text(k[4])))
        else:
            v = lcount_check(db, prev, k)
            diffs += v == 1
            maybes += v == 2
        prev = k
    if prev is not None:
        label_since(db, prev)
    for k in db.execute(base + "SELECT " + cols + ", owner, owner_seq, bin "
                        "FROM lc WHERE serial IS NOT owner ORDER BY "
                        "station, seq"):
        if shown == 0:
            print("\nbatch card counters (cardlicctl batch-count):")
        shown += 1
        print("  DIFFERENCE on batch card %s:" % label_words(k))
        lcount_line(k)
        print("    but count #%s named the batch card %s %s: a card has "
              "one label; count it again with its own" % (
                  text(k[10]), "inserted at #%s" % text(k[11])
                  if k[11] is not None else
                  "in that reader before any batch-in row",
                  label_text(k[9])))
        diffs += 1
    return diffs, maybes


def main():
    db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
    db.text_factory = bytes
    db.execute("BEGIN")
    print("%-10s  %-20s  %-28s  %5s  %8s  %7s  %8s  %8s  %4s  %s" % (
        "STATION", "BATCH READER", "BATCH ATR", "SPENT", "VERIFIED",
        "PENDING", "REJECTED", "IN-DOUBT", "LOST", "BATCH CARD"))
    # issuance's lines of licenses and of credits in doubt (those of
    # in_doubt), and the requests with no outcome as lines of their own
    # ('unanswered', a state that no row has), each with the label of
    # its credit row's insertion.
    for r in db.execute(
            BASE % (UNANSWERED % {"a": "il"}) +
            "SELECT x.station, x.batch_reader, x.batch_atr, "
            "sum(x.state IN ('generated', 'loaded', 'failed', 'verified', "
            "'rejected')) + sum(x.state = 'in-doubt') + sum(x.state = "
            "'unanswered') + sum(x.state = "
            "'resolved' AND x.last_reason LIKE 'spent:%'), "
            "sum(x.state = 'verified'), "
            "sum(x.state IN ('generated', 'loaded', 'failed')), "
            "sum(x.state = 'rejected'), sum(x.state = 'in-doubt') + "
            "sum(x.state = 'unanswered'), "
            "sum(x.state = 'resolved' AND x.last_reason LIKE 'spent:%'), "
            "il.label FROM "
            "(SELECT station, batch_reader, batch_atr, state, last_reason, "
            "license_seq AS at FROM issuance WHERE license_seq IS NOT NULL "
            "UNION ALL SELECT station, batch_reader, batch_atr, CASE WHEN "
            "resolved_seq IS NULL THEN 'in-doubt' ELSE 'resolved' END, "
            "coalesce(resolution, reason), seq FROM in_doubt "
            "UNION ALL SELECT station, "
            "batch_reader, batch_atr, 'unanswered', NULL, seq FROM audit a "
            "WHERE " + UNANSWERED % {"a": "a"} + ") x LEFT JOIN il ON "
            "il.station = x.station AND il.seq = x.at GROUP BY x.station, "
            "x.batch_reader, x.batch_atr, il.label ORDER BY 1, 2, 3, 10"):
        print("%-10s  %-20s  %-28s  %5d  %8d  %7d  %8d  %8d  %4d  %s" % (
            text(r[0]), text(r[1]), text(r[2]), r[3], r[4], r[5], r[6],
            r[7], r[8], label_text(r[9]) if r[9] is not None else "-"))
    diffs, shown = counts(db)
    ldiffs, maybes = labels(db, shown)
    diffs += ldiffs
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
    if diffs + maybes + flags == 0:
        print("\nevery credit spent is accounted for")
    if diffs > 0:
        print("\n%d difference(s) between the batch cards' counters and "
              "the rows" % diffs)
    if maybes > 0:
        print("%s%d possible difference(s) between the batch cards' "
              "counters and the rows, until the credits named are decided "
              "or counted" % ("" if diffs > 0 else "\n", maybes))
    sys.stdout.flush()
    sys.exit(0 if diffs + maybes + flags == 0 else 1)


main()
