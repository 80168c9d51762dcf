# cardlicd: build, test, demo.  See README.md.
PREFIX	?= /usr/local
DESTDIR	?=
SBINDIR	?= $(PREFIX)/sbin
BINDIR	?= $(PREFIX)/bin
DATADIR	?= $(PREFIX)/share
MANDIR	?= $(DATADIR)/man
SYSCONFDIR ?= /etc
UNITDIR	?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CC	?= cc
CFLAGS	?= -O2 -g
WARN	= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	  -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
PKG	= pkg-config

# Debian 12 packages needed to build, test and run the simulated line.
DEB_PKGS = build-essential pkg-config pcscd libpcsclite-dev vsmartcard-vpcd \
	libp11-kit-dev libsystemd-dev libevent-dev libsqlite3-dev sqlite3 \
	check libkeyutils-dev libinih-dev libssl-dev opensc pcsc-tools \
	python3 python3-pyscard python3-pykcs11 mandoc keyutils util-linux \
	systemd

SIM_CFLAGS = $(WARN) $(CFLAGS) $(shell $(PKG) --cflags libpcsclite p11-kit-1)
SIM_LIBS   = $(shell $(PKG) --libs libpcsclite)
CRYPTO_LIBS = $(shell $(PKG) --libs libcrypto)

SIM_BINS = sim/vcard sim/simpcsc sim/cardlic-sim-p11.so

TEST_CFLAGS = $(WARN) $(CFLAGS) -DTOPDIR='"$(CURDIR)"' \
	$(shell $(PKG) --cflags check libpcsclite p11-kit-1)
TEST_LIBS = $(shell $(PKG) --libs check libpcsclite p11-kit-1)
CHECKS	= tests/check_sim tests/check_daemon tests/check_service tests/check_ctl

D_PKGS	= libpcsclite p11-kit-1 libevent libsystemd sqlite3 inih libcrypto
D_CFLAGS = $(WARN) $(CFLAGS) -pthread $(shell $(PKG) --cflags $(D_PKGS))
D_LIBS	= -pthread $(shell $(PKG) --libs $(D_PKGS)) -lkeyutils
D_SRCS	= daemon/main.c daemon/log.c daemon/conf.c daemon/pin.c \
	  daemon/date.c daemon/db.c daemon/dbhash.c daemon/pkcs11.c \
	  daemon/batch.c daemon/watch.c daemon/job.c daemon/control.c
D_HDRS	= daemon/cardlicd.h daemon/date.h daemon/dbhash.h
SQL	= $(sort $(wildcard sql/[0-9][0-9][0-9]-*.sql))

C_SRCS	= ctl/cardlicctl.c ctl/query.c ctl/chain.c ctl/follow.c \
	  daemon/dbhash.c
C_HDRS	= ctl/cardlicctl.h daemon/dbhash.h

all: daemon/cardlicd ctl/cardlicctl sim

ctl/cardlicctl: $(C_SRCS) $(C_HDRS) build/sqlmig.c
	$(CC) $(WARN) $(CFLAGS) $(shell $(PKG) --cflags sqlite3 inih libcrypto) \
	    -o $@ $(C_SRCS) build/sqlmig.c \
	    $(shell $(PKG) --libs sqlite3 inih libcrypto)

build/sqlmig.c: $(SQL) sql/sql2c.sh
	@mkdir -p build
	sql/sql2c.sh $(SQL) > $@

daemon/cardlicd: $(D_SRCS) $(D_HDRS) build/sqlmig.c
	$(CC) $(D_CFLAGS) -o $@ $(D_SRCS) build/sqlmig.c $(D_LIBS)

# The test build: the same daemon with the CARDLICD_FAULT stop points.
daemon/cardlicd-faults: $(D_SRCS) $(D_HDRS) build/sqlmig.c
	$(CC) $(D_CFLAGS) -DCARDLICD_FAULTS -o $@ $(D_SRCS) build/sqlmig.c \
	    $(D_LIBS)

sim: $(SIM_BINS)

sim/vcard: sim/vcard.c sim/simlic.c daemon/date.c sim/simproto.h daemon/date.h
	$(CC) $(SIM_CFLAGS) -o $@ sim/vcard.c sim/simlic.c daemon/date.c $(CRYPTO_LIBS)

sim/simpcsc: sim/simpcsc.c
	$(CC) $(SIM_CFLAGS) -o $@ sim/simpcsc.c $(SIM_LIBS)

sim/cardlic-sim-p11.so: sim/p11sim.c sim/simproto.h
	$(CC) $(SIM_CFLAGS) -fPIC -shared -fvisibility=hidden \
	    -Wl,--no-undefined -o $@ sim/p11sim.c $(SIM_LIBS) -lpthread

tests/check_sim: tests/check_sim.c tests/testline.c tests/testline.h \
    sim/simproto.h
	$(CC) $(TEST_CFLAGS) -o $@ tests/check_sim.c tests/testline.c \
	    $(TEST_LIBS)

# The suites that run cardlicd share the helpers of tests/testdaemon.c.
D_CHECKS = tests/check_daemon tests/check_service tests/check_ctl
$(D_CHECKS): %: %.c tests/testline.c tests/testline.h tests/testdaemon.c \
    tests/testdaemon.h
	$(CC) $(TEST_CFLAGS) -o $@ $@.c tests/testline.c tests/testdaemon.c \
	    $(TEST_LIBS)

tests/check_faults: tests/check_faults.c tests/testline.c tests/testline.h \
    tests/testdaemon.c tests/testdaemon.h
	$(CC) $(TEST_CFLAGS) -o $@ tests/check_faults.c tests/testline.c \
	    tests/testdaemon.c $(TEST_LIBS)

# The fault matrix (tests/README.md): every step of a job x every fault.
# check-faults-ci runs the credit-critical rows only, GENERATE to the
# final commit.
FAULT_CI_ROWS = generate,spent,getresp1,getresp2,getresp3,generated,\
	commit-generated,load,readback,commit-final
check-faults: deps all daemon/cardlicd-faults tests/check_faults
	./tests/check_faults

check-faults-ci: deps all daemon/cardlicd-faults tests/check_faults
	FAULT_ROWS='$(FAULT_CI_ROWS)' ./tests/check_faults

# Every suite runs even when one fails; the summary lines come last.
check: deps all $(CHECKS) lint-man lint-unit
	@rc=0; for t in $(CHECKS); do ./$$t || rc=1; done; exit $$rc

# The unit with its paths filled in; $(1) is where cardlicd lives.
unit_sed = sed -e 's|@SBINDIR@|$(1)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

MANPAGES = man/cardlicd.8 man/cardlicd.conf.5 man/cardlicctl.1

install: daemon/cardlicd ctl/cardlicctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(DATADIR)/cardlicd/sql $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/cardlicd
	install -m 0755 daemon/cardlicd $(DESTDIR)$(SBINDIR)/cardlicd
	install -m 0755 ctl/cardlicctl $(DESTDIR)$(BINDIR)/cardlicctl
	$(call unit_sed,$(SBINDIR)) systemd/cardlicd.service.in > \
	    $(DESTDIR)$(UNITDIR)/cardlicd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cardlicd.service
	install -m 0644 systemd/cardlicd.sysusers \
	    $(DESTDIR)$(SYSUSERSDIR)/cardlicd.conf
	install -m 0644 systemd/cardlicd.tmpfiles \
	    $(DESTDIR)$(TMPFILESDIR)/cardlicd.conf
	install -m 0644 $(SQL) $(DESTDIR)$(DATADIR)/cardlicd/sql/
	install -m 0644 man/cardlicd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/cardlicd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/cardlicctl.1 $(DESTDIR)$(MANDIR)/man1/
	@# The admin's configuration is never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf ] || \
	    install -m 0640 conf/cardlicd.conf \
	    $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf

# Removes what install put there; the configuration only if unchanged.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cardlicd $(DESTDIR)$(BINDIR)/cardlicctl \
	    $(DESTDIR)$(MANDIR)/man1/cardlicctl.1 \
	    $(DESTDIR)$(UNITDIR)/cardlicd.service \
	    $(DESTDIR)$(SYSUSERSDIR)/cardlicd.conf \
	    $(DESTDIR)$(TMPFILESDIR)/cardlicd.conf \
	    $(DESTDIR)$(MANDIR)/man8/cardlicd.8 \
	    $(DESTDIR)$(MANDIR)/man5/cardlicd.conf.5
	rm -rf $(DESTDIR)$(DATADIR)/cardlicd
	if cmp -s conf/cardlicd.conf \
	    $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf; \
	    rmdir $(DESTDIR)$(SYSCONFDIR)/cardlicd 2>/dev/null || true; \
	else echo "kept $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf"; fi

# mandoc -Tlint at warning level: style notes about manuals this machine
# has not installed (pcscd(8), ...) are not ours to fix.
lint-man: $(MANPAGES)
	mandoc -Tlint -W warning $(MANPAGES)

# systemd-analyze verify, where systemd is installed, on the unit with
# ExecStart= pointing at the binary just built (verify wants it to exist).
lint-unit: systemd/cardlicd.service.in daemon/cardlicd
	@if command -v systemd-analyze >/dev/null; then \
	    mkdir -p build/verify && \
	    $(call unit_sed,$(CURDIR)/daemon) \
	    systemd/cardlicd.service.in > build/verify/cardlicd.service && \
	    systemd-analyze verify --man=no build/verify/cardlicd.service && \
	    echo "systemd-analyze verify: clean"; \
	else echo "systemd-analyze not installed: unit not verified"; fi

# cardlicd and cardlicctl under AddressSanitizer and UBSan, through the
# whole suite.  The simulator stays unsanitized: its PKCS#11 module is
# also loaded by pkcs11-tool and Python, which carry no ASan runtime.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
check-sanitize: deps sim
	rm -f daemon/cardlicd ctl/cardlicctl
	$(MAKE) daemon/cardlicd ctl/cardlicctl CFLAGS="$(SAN_FLAGS)"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(MAKE) check; \
	    rc=$$?; rm -f daemon/cardlicd ctl/cardlicctl; exit $$rc

bench/apdufloor: bench/apdufloor.c
	$(CC) $(SIM_CFLAGS) -o $@ bench/apdufloor.c $(SIM_LIBS)

# Figures, printed: per-card latency against the bare APDU floor.
bench: deps all bench/apdufloor
	bench/run

# The simulated production line, end to end (see README.md).
demo: deps all
	demo/run

# Installs the Debian packages above when run as root; otherwise prints the
# command to run.
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	    echo "missing Debian packages; run:"; \
	    echo "  sudo apt-get install $$(echo $$missing)"; exit 1; \
	fi

clean:
	rm -f daemon/cardlicd daemon/cardlicd-faults tests/check_faults \
	    ctl/cardlicctl bench/apdufloor $(SIM_BINS) $(CHECKS) sim/*.o
	rm -rf build

.PHONY: all sim deps check check-faults check-faults-ci check-sanitize demo bench clean install uninstall \
	lint-man lint-unit
