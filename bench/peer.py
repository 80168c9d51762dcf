#!/usr/bin/python3
"""The license flow as an integrator would script it (issue 12, item 4).

pyscard waits for cards and talks to the batch card; PyKCS11 talks to the
target cards through the vendor's module; sqlite3 keeps the rows (WAL,
synchronous=FULL, one transaction per row).  One thread per target reader,
a lock around the batch card.  Nothing clever: this is the yardstick that
cardlicd must beat.  Appends one TSV line per card to --results, in issue
12's common format (µs, "-" for a step not done):
    peer readers serial outcome total token status login pending requested
    batchwait generate generated load readback outcome
total runs from SCardGetStatusChange reporting the card present to the
outcome row's commit returned; the steps are consecutive.

/usr/bin/python3 on purpose: pyscard and PyKCS11 come from Debian.
"""
import argparse
import os
import sqlite3
import sys
import threading
import time

import PyKCS11
from smartcard import scard

LIC_ATTR = 0x8000006A
SELECT = [0x00, 0xA4, 0x04, 0x0C, 0x09,
          0xA0, 0x00, 0x00, 0x03, 0x63, 0x4D, 0x57, 0x4C, 0x01]
STEPS = ("token", "status", "login", "pending", "requested", "batchwait",
         "generate", "generated", "load", "readback", "outcome")
SCHEMA = """CREATE TABLE IF NOT EXISTS issuance (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, reader TEXT NOT NULL,
    model TEXT NOT NULL, serial TEXT NOT NULL, state TEXT NOT NULL,
    start TEXT, end_date TEXT, license BLOB, note TEXT);
CREATE INDEX IF NOT EXISTS issuance_card ON issuance (serial, model, id);"""


def now_us():
    return time.monotonic_ns() // 1000


class Failed(Exception):
    pass


class Peer:
    def __init__(self, a):
        self.a = a
        self.today = os.environ.get("CARDLIC_TODAY") or \
            time.strftime("%Y%m%d", time.gmtime())
        with open(a.pin_file) as f:
            self.pin = f.readline().rstrip("\n")
        self.p11 = PyKCS11.PyKCS11Lib()
        self.p11.load(a.module)
        self.handle0 = PyKCS11.LowLevel.CK_OBJECT_HANDLE()
        self.handle0.assign(0)	# PyKCS11 has no public way to say "0"
        self.readers = [r for r in a.readers.split(",") if r]
        self.slots = self.map_slots()
        db = self.db()
        db.executescript(SCHEMA)
        db.close()
        self.batch_lock = threading.Lock()
        self.batch_ctx = self.ok(scard.SCardEstablishContext(
            scard.SCARD_SCOPE_USER), "batch context")
        self.batch_card = self.batch_proto = None
        self.out_lock = threading.Lock()
        self.done = 0
        self.stop = threading.Event()
        self.ctxs = []

    @staticmethod
    def ok(res, what):
        if res[0] != scard.SCARD_S_SUCCESS:
            raise Failed("%s: %s" % (what,
                                     scard.SCardGetErrorMessage(res[0])))
        return res[1] if len(res) == 2 else res[1:]

    def db(self):
        db = sqlite3.connect(self.a.db, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def map_slots(self):
        # The module names a slot after its reader (cut at 64 bytes).
        slots = {}
        for s in self.p11.getSlotList():
            desc = self.p11.getSlotInfo(s).slotDescription.rstrip()
            for r in self.readers:
                if r[:64] == desc:
                    slots[r] = s
        for r in self.readers:
            if r not in slots:
                sys.exit("peer.py: no PKCS#11 slot for reader %r" % r)
        return slots

    def row(self, db, reader, model, serial, state, start=None, end=None,
            lic=None, note=None):
        db.execute("INSERT INTO issuance (at, reader, model, serial, state,"
                   " start, end_date, license, note)"
                   " VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'),"
                   " ?, ?, ?, ?, ?, ?, ?, ?)",
                   (reader, model, serial, state, start, end, lic, note))
        db.commit()

    # The batch card: connected once, under the lock from then on.
    def transmit(self, apdu):
        resp = self.ok(scard.SCardTransmit(self.batch_card, self.batch_proto,
                                           apdu), "batch card")
        if len(resp) < 2:
            raise Failed("batch card: answer without a status word")
        return resp[:-2], resp[-2] << 8 | resp[-1]

    def generate(self, model, serial):
        if self.batch_card is None:
            self.batch_card, self.batch_proto = self.ok(scard.SCardConnect(
                self.batch_ctx, self.a.batch_reader, scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1),
                "batch card connect")
        try:
            self.ok((scard.SCardBeginTransaction(self.batch_card), None),
                    "batch card transaction")
            _, sw = self.transmit(SELECT)
            if sw != 0x9000:
                raise Failed("batch SELECT: %04X" % sw)
            data = list(model + serial + self.today.encode())
            data, sw = self.transmit([0x00, 0xF8, 0x00, 0x00, 0x28] + data +
                                     [0x88])
            while sw >> 8 == 0x61:
                more, sw = self.transmit([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])
                data += more
        except Failed:
            # Pulled, reset, or gone astray: connect afresh next time.
            scard.SCardDisconnect(self.batch_card, scard.SCARD_LEAVE_CARD)
            self.batch_card = None
            raise
        finally:
            if self.batch_card is not None:
                scard.SCardEndTransaction(self.batch_card,
                                          scard.SCARD_LEAVE_CARD)
        if sw != 0x9000 or len(data) != 136:
            raise Failed("GENERATE: %04X, %d bytes" % (sw, len(data)))
        return bytes(data[:8]).decode(), bytes(data[8:])

    def status(self, se):
        st = bytes(se.getAttributeValue(self.handle0, [LIC_ATTR], True)[0])
        if len(st) != 19:
            raise Failed("status: %d bytes" % len(st))
        return st

    def job(self, db, reader, t0):
        t = {}
        last = [t0]
        outcome = "failed"
        serial = model = b""

        def step(name):
            n = now_us()
            t[name] = n - last[0]
            last[0] = n

        se = None
        try:
            slot = self.slots[reader]
            if slot not in self.p11.getSlotList():
                raise Failed("slot %d is gone" % slot)
            ti = self.p11.getTokenInfo(slot)
            model = ti.model.encode()
            serial = ti.serialNumber.encode()
            if len(model) != 16 or len(serial) != 16:
                raise Failed("model or serial is not 16 bytes")
            step("token")
            se = self.p11.openSession(slot, PyKCS11.CKF_RW_SESSION)
            st = self.status(se)
            step("status")
            if st[1] == 1 and st[2] == 1:
                outcome = "skipped"	# licensed already, or global
                self.row(db, reader, model, serial, "skipped")
                step("outcome")
                return outcome, serial, t, last[0] - t0
            se.login(self.pin)
            step("login")
            # A license generated for this card and never verified on it
            # (the card was pulled, or we crashed) is loaded, not bought
            # again.
            pending = db.execute(
                "SELECT start, end_date, license FROM issuance"
                " WHERE serial = ?1 AND model = ?2 AND state = 'generated'"
                " AND id > coalesce((SELECT max(id) FROM issuance"
                "  WHERE serial = ?1 AND model = ?2 AND state = 'verified'),"
                "  0) AND (end_date = '00000000' OR end_date >= ?3)"
                " ORDER BY id DESC LIMIT 1",
                (serial, model, self.today)).fetchone()
            step("pending")
            if pending is not None:
                start, end, lic = pending
            else:
                start = self.today
                self.row(db, reader, model, serial, "requested", start)
                step("requested")
                with self.batch_lock:
                    step("batchwait")
                    end, lic = self.generate(model, serial)
                step("generate")
                self.row(db, reader, model, serial, "generated", start, end,
                         lic)
                step("generated")
            se.setAttributeValue(self.handle0, [(LIC_ATTR, lic)])
            step("load")
            st = self.status(se)
            step("readback")
            if st[:3] != b"\x01\x01\x01" or st[3:11] != start.encode() or \
                    st[11:19] != end.encode():
                outcome = "rejected"
                self.row(db, reader, model, serial, "rejected", start, end,
                         lic, st.hex())
            else:
                outcome = "verified"
                self.row(db, reader, model, serial, "verified", start, end)
            step("outcome")
        except (Failed, PyKCS11.PyKCS11Error) as e:
            doing = next((s for s in STEPS if s not in t), "?")
            print("peer.py: %s: %s: %s: %s" % (
                reader, serial.decode().rstrip(), doing, e), file=sys.stderr)
            try:
                self.row(db, reader, model, serial, "failed", note=str(e))
                step("outcome")
            except sqlite3.Error:
                pass
        finally:
            if se is not None:
                try:
                    se.closeSession()
                except PyKCS11.PyKCS11Error:
                    pass	# the card was pulled already
        return outcome, serial, t, last[0] - t0

    def report(self, outcome, serial, t, total):
        line = "\t".join(["peer", str(len(self.readers)),
                          serial.decode().rstrip() or "-", outcome,
                          str(total)] +
                         [str(t[s]) if s in t else "-" for s in STEPS])
        with self.out_lock:
            with open(self.a.results, "a") as f:
                f.write(line + "\n")
            self.done += 1
            if self.done >= self.a.count:
                self.stop.set()

    def watch(self, reader):
        # One reader: a card is new when pcscd's event counter moves.
        ctx = self.ok(scard.SCardEstablishContext(scard.SCARD_SCOPE_USER),
                      "context")
        db = self.db()	# one connection per thread, as sqlite3 wants
        with self.out_lock:
            self.ctxs.append(ctx)
        state, handled = scard.SCARD_STATE_UNAWARE, None
        while not self.stop.is_set():
            rv, states = scard.SCardGetStatusChange(
                ctx, scard.INFINITE, [(reader, state)])
            t0 = now_us()
            if rv == scard.SCARD_E_CANCELLED:
                break
            if rv != scard.SCARD_S_SUCCESS:
                print("peer.py: %s: %s" % (reader,
                      scard.SCardGetErrorMessage(rv)), file=sys.stderr)
                time.sleep(0.1)
                continue
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            counter = state >> 16
            if not state & scard.SCARD_STATE_PRESENT or \
                    state & scard.SCARD_STATE_MUTE or counter == handled:
                continue
            handled = counter
            if self.stop.is_set():
                break
            self.report(*self.job(db, reader, t0))
        scard.SCardReleaseContext(ctx)
        db.close()

    def run(self):
        threads = [threading.Thread(target=self.watch, args=(r,))
                   for r in self.readers]
        for th in threads:
            th.start()
        self.stop.wait()
        with self.out_lock:
            for ctx in self.ctxs:
                scard.SCardCancel(ctx)
        for th in threads:
            th.join()
        if self.batch_card is not None:
            scard.SCardDisconnect(self.batch_card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(self.batch_ctx)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True)
    p.add_argument("--batch-reader", required=True)
    p.add_argument("--readers", required=True, help="NAME1,NAME2,...")
    p.add_argument("--module", required=True)
    p.add_argument("--pin-file", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--results", required=True)
    Peer(p.parse_args()).run()


if __name__ == "__main__":
    main()
