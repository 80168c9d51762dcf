# cardlicd: build, test, demo.  See README.md.
PREFIX	?= /usr/local
DESTDIR	?=
SBINDIR	?= $(PREFIX)/sbin
BINDIR	?= $(PREFIX)/bin
DATADIR	?= $(PREFIX)/share
MANDIR	?= $(DATADIR)/man
SYSCONFDIR ?= /etc
PKG	?= pkg-config
# systemd's own directories, from its pkg-config file, moved under PREFIX
# (systemd also reads /usr/local/lib/systemd/system and the like).
SD_VAR	= $(shell $(PKG) --define-variable=prefix=$(PREFIX) \
	    --define-variable=root_prefix=$(PREFIX) --variable=$(1) systemd \
	    2>/dev/null)
SD_DIR	= $(or $(call SD_VAR,$(1)),$(PREFIX)/$(2))
UNITDIR	?= $(call SD_DIR,systemdsystemunitdir,lib/systemd/system)
SYSUSERSDIR ?= $(call SD_DIR,sysusersdir,lib/sysusers.d)
TMPFILESDIR ?= $(call SD_DIR,tmpfilesdir,lib/tmpfiles.d)
CATALOGDIR ?= $(call SD_DIR,catalogdir,lib/systemd/catalog)
CC	?= cc

# Build flags: CPPFLAGS, CFLAGS and LDFLAGS as dpkg-buildflags sets them;
# by default Debian's hardening set, with the control-flow and stack-clash
# protections of Debian 13 where the compiler knows them (hardening-check
# asks for both).  PIE goes to the programs only (the simulated PKCS#11
# module is a shared object).
cc_has	= $(shell $(CC) $(1) -Werror -E -x c /dev/null >/dev/null 2>&1 && \
	    echo $(1))
CPPFLAGS ?= -D_FORTIFY_SOURCE=2
CFLAGS	?= -O2 -g -fstack-protector-strong $(HARDEN_EXTRA) -Wformat \
	   -Werror=format-security
ifeq ($(origin CFLAGS),file)
HARDEN_EXTRA := $(call cc_has,-fstack-clash-protection) \
	$(call cc_has,-fcf-protection)
endif
LDFLAGS	?= -Wl,-z,relro -Wl,-z,now
PIE	= -fPIE -pie
# -Werror is the developers' build.  A distribution build (dpkg-buildpackage
# sets DEB_HOST_ARCH; or say DEB_BUILD=1) and make install must not stop at
# a warning that a newer compiler invents: for them it is off.
ifneq ($(DEB_BUILD)$(DEB_HOST_ARCH),)
WERROR	?=
else
WERROR	?= -Werror
endif
WARN	= -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -Wshadow \
	  -Wstrict-prototypes -Wmissing-prototypes -Wformat=2

# Debian 12 packages needed to build, test and run the simulated line.
# cardlicd and cardlicctl sign and hash with libsodium; libssl-dev is for
# the simulator and the tests, which keep OpenSSL as an independent oracle.
DEB_PKGS = build-essential pkg-config pcscd libpcsclite-dev vsmartcard-vpcd \
	libp11-kit-dev libsystemd-dev libevent-dev libsqlite3-dev sqlite3 \
	check libkeyutils-dev libinih-dev libsodium-dev libssl-dev opensc \
	pcsc-tools \
	python3 python3-pyscard python3-pykcs11 mandoc keyutils util-linux \
	systemd strace time

SIM_CFLAGS = $(WARN) $(CPPFLAGS) $(CFLAGS) $(shell $(PKG) --cflags libpcsclite p11-kit-1)
SIM_LIBS   = $(shell $(PKG) --libs libpcsclite)
CRYPTO_LIBS = $(shell $(PKG) --libs libcrypto)

SIM_BINS = sim/vcard sim/simpcsc sim/cardlic-sim-p11.so

TEST_CFLAGS = $(WARN) $(CPPFLAGS) $(CFLAGS) -DTOPDIR='"$(CURDIR)"' \
	$(shell $(PKG) --cflags check libpcsclite p11-kit-1)
TEST_LIBS = $(shell $(PKG) --libs check libpcsclite p11-kit-1)
CHECKS	= tests/check_unit tests/check_conf tests/check_sim tests/check_daemon \
	  tests/check_credit tests/check_service tests/check_ctl \
	  tests/check_batch tests/fuzz/check_regress \
	  tests/check_tamper \
	  tests/check_batchcount
CHECKS	+= tests/check_checkpoint
CHECKS	+= tests/check_trust tests/check_race

D_PKGS	= libpcsclite p11-kit-1 libevent libsystemd sqlite3 inih libsodium \
	  libkeyutils
D_CFLAGS = $(WARN) $(CPPFLAGS) $(CFLAGS) -pthread \
	  $(shell $(PKG) --cflags $(D_PKGS))
D_LIBS	= -pthread $(shell $(PKG) --libs $(D_PKGS))
D_SRCS	= daemon/main.c daemon/log.c daemon/conf.c daemon/pin.c \
	  daemon/date.c daemon/db.c daemon/dbhash.c daemon/pkcs11.c \
	  daemon/batch.c daemon/watch.c daemon/job.c daemon/control.c \
	  daemon/fault.c daemon/spill.c daemon/issue.c \
	  daemon/line.c daemon/classify.c daemon/pinturn.c daemon/sign.c
D_SRCS	+= daemon/checkpoint.c daemon/recover.c daemon/thread.c daemon/record.c
D_HDRS	= daemon/cardlicd.h daemon/date.h daemon/dbhash.h daemon/auditrow.h \
	  daemon/version.h daemon/sign.h
SQL	= $(sort $(wildcard sql/[0-9][0-9][0-9]-*.sql))

C_SRCS	= ctl/cardlicctl.c ctl/query.c ctl/chain.c ctl/follow.c ctl/resolve.c \
	  ctl/keys.c ctl/vexport.c ctl/schema.c ctl/reconcile.c \
	  daemon/dbhash.c daemon/sign.c build/sqlschema.c
C_HDRS	= ctl/cardlicctl.h daemon/dbhash.h daemon/auditrow.h daemon/version.h \
	  daemon/sign.h
C_PKGS	= sqlite3 inih libsodium
# verify --checkpoints: the checkpoints, and the journal that holds them
# (libsystemd's header only: ctl/checkpoint.c loads it when it reads the
# journal, so that no other command pays for its start-up).
C_SRCS	+= ctl/checkpoint.c
C_CFLAGS = $(shell $(PKG) --cflags libsystemd)

all: daemon/cardlicd daemon/cardlicd-faults ctl/cardlicctl sim

ctl/cardlicctl: $(C_SRCS) $(C_HDRS) build/sqlmig.c
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) $(PIE) \
	    $(shell $(PKG) --cflags $(C_PKGS)) $(C_CFLAGS) $(LDFLAGS) \
	    -o $@ $(C_SRCS) build/sqlmig.c $(shell $(PKG) --libs $(C_PKGS))

build/sqlmig.c: $(SQL) sql/sql2c.sh
	@mkdir -p build
	sql/sql2c.sh $(SQL) > $@

# The schema of each version, made once here rather than by cardlicctl at
# every start (ctl/schemagen.c).
build/schemagen: ctl/schemagen.c ctl/cardlicctl.h build/sqlmig.c
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) $(shell $(PKG) --cflags sqlite3) \
	    -o $@ ctl/schemagen.c build/sqlmig.c \
	    $(shell $(PKG) --libs sqlite3)

build/sqlschema.c: build/schemagen
	build/schemagen > $@.tmp && mv $@.tmp $@

daemon/cardlicd: $(D_SRCS) $(D_HDRS) build/sqlmig.c
	$(CC) $(D_CFLAGS) $(PIE) $(LDFLAGS) -o $@ $(D_SRCS) build/sqlmig.c \
	    $(D_LIBS)

# The same daemon with its fault points live (daemon/fault.c): for the
# tests only, never installed.
daemon/cardlicd-faults: $(D_SRCS) $(D_HDRS) build/sqlmig.c
	$(CC) $(D_CFLAGS) -DCARDLICD_FAULTS $(PIE) $(LDFLAGS) -o $@ $(D_SRCS) \
	    build/sqlmig.c $(D_LIBS)

sim: $(SIM_BINS)

sim/vcard: sim/vcard.c sim/simlic.c sim/simdate.c sim/simproto.h sim/simdate.h
	$(CC) $(SIM_CFLAGS) $(PIE) $(LDFLAGS) -o $@ sim/vcard.c sim/simlic.c \
	    sim/simdate.c $(CRYPTO_LIBS)

sim/simpcsc: sim/simpcsc.c
	$(CC) $(SIM_CFLAGS) $(PIE) $(LDFLAGS) -o $@ sim/simpcsc.c $(SIM_LIBS)

sim/cardlic-sim-p11.so: sim/p11sim.c sim/simproto.h
	$(CC) $(SIM_CFLAGS) -fPIC -shared -fvisibility=hidden $(LDFLAGS) \
	    -Wl,--no-undefined -o $@ sim/p11sim.c $(SIM_LIBS) -pthread

tests/check_sim: tests/check_sim.c tests/testline.c tests/testline.h \
    sim/simproto.h
	$(CC) $(TEST_CFLAGS) $(PIE) $(LDFLAGS) -o $@ tests/check_sim.c \
	    tests/testline.c $(TEST_LIBS)

# The configuration, without a line: conf.c included, the golden table of
# tests/conf/ run through cardlicd -n.
tests/check_conf: tests/check_conf.c daemon/conf.c daemon/pin.c daemon/date.c \
    daemon/dbhash.c daemon/sign.c daemon/pkcs11.c daemon/classify.c $(D_HDRS) \
    daemon/cardlicd sim/cardlic-sim-p11.so
	$(CC) $(TEST_CFLAGS) $(shell $(PKG) --cflags libsodium libkeyutils) \
	    $(PIE) $(LDFLAGS) -o $@ \
	    tests/check_conf.c daemon/pin.c daemon/date.c daemon/dbhash.c \
	    daemon/sign.c daemon/pkcs11.c daemon/classify.c $(TEST_LIBS) \
	    $(shell $(PKG) --libs libsodium libkeyutils)

# Unit tests, without a line: the daemon's pieces linked, cardlicctl.c
# included (its main renamed), the rest of cardlicctl linked; and
# libcrypto, the oracle that sign.c's keys and signatures are held to.
U_SRCS	= daemon/conf.c daemon/classify.c daemon/pinturn.c daemon/pin.c \
	  daemon/date.c daemon/dbhash.c daemon/sign.c daemon/pkcs11.c \
	  daemon/log.c $(filter-out ctl/cardlicctl.c daemon/%,$(C_SRCS)) \
	  build/sqlmig.c
tests/check_unit: tests/check_unit.c $(U_SRCS) ctl/cardlicctl.c $(D_HDRS) \
    $(C_HDRS)
	$(CC) $(TEST_CFLAGS) \
	    $(shell $(PKG) --cflags $(D_PKGS) $(C_PKGS) libcrypto) \
	    $(PIE) $(LDFLAGS) -o $@ tests/check_unit.c $(U_SRCS) $(TEST_LIBS) \
	    $(shell $(PKG) --libs $(D_PKGS) $(C_PKGS) libcrypto)

# A hostile middleware for the tests, over the simulated one.
tests/p11shim.so: tests/p11shim.c
	$(CC) $(SIM_CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ \
	    tests/p11shim.c -ldl

tests/check_credit: tests/p11shim.so

# The batch card's answers, without a line: batch.c included, a scripted
# card behind batch_exchange.
tests/check_batch: tests/check_batch.c tests/fuzz/stubs.h daemon/batch.c \
    daemon/date.c daemon/dbhash.c $(D_HDRS)
	$(CC) $(TEST_CFLAGS) $(shell $(PKG) --cflags libsodium) -o $@ \
	    tests/check_batch.c daemon/date.c daemon/dbhash.c $(TEST_LIBS) \
	    $(shell $(PKG) --libs libsodium) -pthread

# The tamper suite (issue 11): databases written by the daemon's own db.c,
# attacked with sqlite3, judged by cardlicctl verify.
tests/check_tamper: tests/check_tamper.c tests/fuzz/stubs.h daemon/db.c \
    daemon/dbhash.c daemon/sign.c daemon/date.c build/sqlmig.c $(D_HDRS) \
    tests/testline.c tests/testline.h tests/testdaemon.c tests/testdaemon.h \
    ctl/cardlicctl daemon/cardlicd sim/cardlic-sim-p11.so bench/mkaudit
	$(CC) $(TEST_CFLAGS) $(shell $(PKG) --cflags sqlite3 libsodium) \
	    $(PIE) $(LDFLAGS) -o $@ tests/check_tamper.c daemon/db.c \
	    daemon/dbhash.c daemon/sign.c daemon/date.c build/sqlmig.c \
	    tests/testline.c tests/testdaemon.c \
	    $(TEST_LIBS) $(shell $(PKG) --libs sqlite3 libsodium) -pthread

# The suites that run cardlicd share the helpers of tests/testdaemon.c.
D_CHECKS = tests/check_daemon tests/check_credit tests/check_service \
	   tests/check_ctl tests/check_batchcount
D_CHECKS += tests/check_checkpoint
$(D_CHECKS): %: %.c tests/testline.c tests/testline.h tests/testdaemon.c \
    tests/testdaemon.h
	$(CC) $(TEST_CFLAGS) $(PIE) $(LDFLAGS) -o $@ $@.c tests/testline.c \
	    tests/testdaemon.c $(TEST_LIBS)

# Issue 18's suite: on the line, with the daemon's own hash to forge rows
# and spill records as someone with write access and no key would.
tests/check_trust: tests/check_trust.c tests/testline.c tests/testline.h \
    tests/testdaemon.c tests/testdaemon.h daemon/dbhash.c $(D_HDRS)
	$(CC) $(TEST_CFLAGS) $(shell $(PKG) --cflags sqlite3 libsodium) \
	    $(PIE) $(LDFLAGS) -o $@ tests/check_trust.c tests/testline.c \
	    tests/testdaemon.c daemon/dbhash.c $(TEST_LIBS) \
	    $(shell $(PKG) --libs sqlite3 libsodium)

# Decisions sent at once (issue 18, case 9): the daemon's db.c, linked.
# RACE_DB_C=other/db.c builds it against another db.c (the old one fails).
RACE_DB_C ?= daemon/db.c
tests/check_race: tests/check_race.c tests/fuzz/stubs.h $(RACE_DB_C) \
    daemon/dbhash.c daemon/sign.c daemon/date.c build/sqlmig.c $(D_HDRS)
	$(CC) $(TEST_CFLAGS) $(shell $(PKG) --cflags sqlite3 libsodium) \
	    $(PIE) $(LDFLAGS) -o $@ tests/check_race.c $(RACE_DB_C) \
	    daemon/dbhash.c daemon/sign.c daemon/date.c build/sqlmig.c \
	    $(TEST_LIBS) $(shell $(PKG) --libs sqlite3 libsodium) -pthread

# The scale cases build their databases with bench/mkaudit.
tests/check_ctl: bench/mkaudit

tests/check_faults: tests/check_faults.c tests/testline.c tests/testline.h \
    tests/testdaemon.c tests/testdaemon.h
	$(CC) $(TEST_CFLAGS) $(PIE) $(LDFLAGS) -o $@ tests/check_faults.c \
	    tests/testline.c tests/testdaemon.c $(TEST_LIBS)

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
# The suites in three lanes at once (tests/run-suites): the two longest
# alone, the others one after another.  Every suite runs even when one
# fails; each one's output comes in order, and Check's summary lines last.
CHECK_LANES = "tests/check_daemon tests/check_trust" "tests/check_credit" \
	"$(filter-out tests/check_daemon tests/check_credit tests/check_trust,$(CHECKS))"
check: deps all $(CHECKS) lint-man lint-unit lint-catalog lint-code \
	check-hardening
	@tests/run-suites $(CHECK_LANES)

# The unit with its paths filled in; $(1) is where cardlicd lives.
unit_sed = sed -e 's|@SBINDIR@|$(1)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

MANPAGES = man/cardlicd.8 man/cardlicd.conf.5 man/cardlicctl.1

# make install runs these steps only on the machine itself (no DESTDIR),
# as root; a package does them in its maintainer scripts instead.
LIVE	= [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]
CONF	= $(DESTDIR)$(SYSCONFDIR)/cardlicd/cardlicd.conf
# The signing key, as the unit's LoadCredential=cardlicd-key finds it.
KEY	= $(SYSCONFDIR)/credstore/cardlicd-key
KEYPUB	= $(SYSCONFDIR)/cardlicd/station.pub

# Never -Werror here: an admin's newer compiler must not stop the install.
install: WERROR =
install: daemon/cardlicd ctl/cardlicctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(CATALOGDIR) \
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
	install -m 0644 systemd/cardlicd.catalog \
	    $(DESTDIR)$(CATALOGDIR)/cardlicd.catalog
	install -m 0644 $(SQL) $(DESTDIR)$(DATADIR)/cardlicd/sql/
	install -m 0644 man/cardlicd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/cardlicd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/cardlicctl.1 $(DESTDIR)$(MANDIR)/man1/
	@# The user and groups first: the configuration belongs to group
	@# cardlicd, which the daemon, running as user cardlicd, reads through.
	@if $(LIVE) && command -v systemd-sysusers >/dev/null; then \
	    echo "systemd-sysusers $(SYSUSERSDIR)/cardlicd.conf"; \
	    systemd-sysusers $(SYSUSERSDIR)/cardlicd.conf; fi
	@if $(LIVE) && command -v journalctl >/dev/null; then \
	    echo "journalctl --update-catalog"; journalctl --update-catalog; fi
	@# The admin's configuration is never overwritten.
	@if [ -e $(CONF) ]; then echo "kept $(CONF)"; \
	else install -m 0640 conf/cardlicd.conf $(CONF) && \
	    if $(LIVE) && getent group cardlicd >/dev/null; then \
	        chgrp cardlicd $(CONF) && \
	        echo "installed $(CONF), root:cardlicd 0640"; \
	    else echo "installed $(CONF); once the group cardlicd exists" \
	        "(systemd-sysusers), run:" \
	        "chown root:cardlicd $(SYSCONFDIR)/cardlicd/cardlicd.conf"; \
	    fi; fi
	@# The station's signing key, once: never in the repository, never
	@# replaced (a new key is cardlicctl keygen --rotate), never removed.
	@if ! $(LIVE); then echo "no signing key made (DESTDIR or not" \
	    "root): run cardlicctl keygen $(KEY) $(KEYPUB) as root"; \
	elif [ -e $(KEY) ]; then echo "kept $(KEY)"; \
	elif [ -e $(KEYPUB) ]; then echo "$(KEYPUB) exists but" \
	    "$(KEY) does not: no key made; see cardlicctl(1), keygen"; \
	else install -d -m 0700 $(SYSCONFDIR)/credstore && \
	    ctl/cardlicctl keygen $(KEY) $(KEYPUB) && \
	    echo "give $(KEYPUB) to the auditors (cardlicctl verify --key)"; \
	fi

# What install may have made, deepest first: uninstall removes each one
# that is empty.  bin, sbin and the manual's root are left alone.
OWN_DIRS = $(DATADIR)/cardlicd/sql $(DATADIR)/cardlicd $(CATALOGDIR) \
	$(UNITDIR) $(SYSUSERSDIR) $(TMPFILESDIR) $(PREFIX)/lib/systemd \
	$(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man8 $(SYSCONFDIR)/cardlicd

# Removes what install put there; the configuration only if unchanged.
# The user, its groups and the database stay: the audit trail is kept.
uninstall:
	@echo "make uninstall: stop the service first:" \
	    "systemctl disable --now cardlicd"
	rm -f $(DESTDIR)$(SBINDIR)/cardlicd $(DESTDIR)$(BINDIR)/cardlicctl \
	    $(DESTDIR)$(MANDIR)/man1/cardlicctl.1 \
	    $(DESTDIR)$(UNITDIR)/cardlicd.service \
	    $(DESTDIR)$(SYSUSERSDIR)/cardlicd.conf \
	    $(DESTDIR)$(TMPFILESDIR)/cardlicd.conf \
	    $(DESTDIR)$(CATALOGDIR)/cardlicd.catalog \
	    $(DESTDIR)$(MANDIR)/man8/cardlicd.8 \
	    $(DESTDIR)$(MANDIR)/man5/cardlicd.conf.5
	rm -f $(DESTDIR)$(DATADIR)/cardlicd/sql/[0-9][0-9][0-9]-*.sql
	@if cmp -s conf/cardlicd.conf $(CONF); then rm -f $(CONF); \
	elif [ -e $(CONF) ]; then echo "kept $(CONF)"; fi
	@for d in $(OWN_DIRS); do [ ! -d $(DESTDIR)$$d ] || \
	    rmdir --ignore-fail-on-non-empty $(DESTDIR)$$d; done
	@if $(LIVE) && command -v journalctl >/dev/null; then \
	    journalctl --update-catalog; fi

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

# The rooms of the house (daemon/README.md): no circle of calls between
# cardlicd's files.
lint-code:
	@tests/lint-code circles daemon

# Every MESSAGE_ID that cardlicd sends has its catalog entry, and the
# catalog explains no id that it does not send.
lint-catalog: daemon/log.c systemd/cardlicd.catalog
	@sent=$$(grep -o '"[0-9a-f]\{32\}"' daemon/log.c | tr -d '"' | sort); \
	known=$$(sed -n 's/^-- \([0-9a-f]\{32\}\)$$/\1/p' \
	    systemd/cardlicd.catalog | sort); \
	if [ -z "$$sent" ] || [ "$$sent" != "$$known" ]; then \
	    echo "lint-catalog: MESSAGE_IDs of daemon/log.c and" \
	        "systemd/cardlicd.catalog differ:"; \
	    echo "sent:" $$sent; echo "in the catalog:" $$known; exit 1; fi; \
	echo "lint-catalog: $$(echo "$$sent" | wc -l) MESSAGE_IDs, each in" \
	    "the catalog"

# hardening-check (devscripts), where it is installed: devscripts brings
# some 45 Perl packages, so it is not in DEB_PKGS.  Control-flow
# integrity is asked for only where this system's own programs have it:
# Debian 12's C start files carry no IBT/SHSTK mark, so the linker drops
# it from every program there (hardening-check /bin/true fails too).
check-hardening: daemon/cardlicd ctl/cardlicctl
	@if ! command -v hardening-check >/dev/null; then \
	    echo "hardening-check not installed (devscripts):" \
	        "binaries not checked"; exit 0; fi; \
	cfi=--nocfprotection; \
	hardening-check -q /bin/true >/dev/null 2>&1 && cfi=; \
	hardening-check $$cfi daemon/cardlicd ctl/cardlicctl

# The unit under a real systemd, installed the way README.md says
# (tests/systemd/run; root only, it says SKIPPED where it cannot run).
check-systemd: all
	tests/systemd/run

# cardlicd and cardlicctl under AddressSanitizer and UBSan, through the
# whole suite (not check's lints: hardening-check rightly finds no
# _FORTIFY_SOURCE in a sanitized build).  The simulator stays unsanitized: its PKCS#11 module is
# also loaded by pkcs11-tool and Python, which carry no ASan runtime.
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
check-sanitize: deps sim
	rm -f daemon/cardlicd ctl/cardlicctl
	$(MAKE) daemon/cardlicd ctl/cardlicctl CFLAGS="$(SAN_FLAGS)" CPPFLAGS=
	$(MAKE) $(CHECKS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 tests/run-suites \
	    $(CHECK_LANES); rc=$$?; rm -f daemon/cardlicd ctl/cardlicctl; \
	    exit $$rc

# libFuzzer harnesses (tests/README.md, "Fuzzing"): make fuzz builds
# them with clang and runs each FUZZ_SECONDS from its committed corpus
# tests/fuzz/corpus/NAME (and its regressions); new inputs and crashes
# go to tests/fuzz/work/NAME.  FUZZERS="batch conf" runs only those.
FUZZ_PKGS = clang libclang-rt-14-dev
FUZZ_CC	= clang
FUZZ_SECONDS ?= 60
FUZZERS	?= batch conf status atr verify
FUZZ_FLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FZ_CONF_SRCS = daemon/pin.c daemon/date.c daemon/dbhash.c daemon/sign.c \
	daemon/pkcs11.c daemon/classify.c
FZ_CONF_PKGS = p11-kit-1 libpcsclite libsodium
FZ_SRCS_batch	= daemon/date.c daemon/dbhash.c
FZ_PKGS_batch	= libpcsclite libsodium
FZ_SRCS_conf	= $(FZ_CONF_SRCS)
FZ_PKGS_conf	= $(FZ_CONF_PKGS) libkeyutils
FZ_SRCS_atr	= $(FZ_CONF_SRCS)
FZ_PKGS_atr	= $(FZ_CONF_PKGS)
FZ_SRCS_status	= daemon/date.c daemon/dbhash.c
FZ_PKGS_status	= p11-kit-1 libsodium
FZ_SRCS_verify	= ctl/query.c ctl/chain.c ctl/follow.c ctl/resolve.c \
	ctl/keys.c ctl/vexport.c ctl/schema.c ctl/reconcile.c \
	daemon/dbhash.c daemon/sign.c build/sqlmig.c build/sqlschema.c
FZ_PKGS_verify	= sqlite3 inih libsodium
# cmd_verify's --checkpoints (ctl/checkpoint.c, which reads the journal).
FZ_SRCS_verify	+= ctl/checkpoint.c
FZ_PKGS_verify	+= libsystemd
FZ_OPTS_batch	= -max_len=4096
FZ_OPTS_conf	= -dict=tests/fuzz/conf.dict
FZ_OPTS_status	= -max_len=100
FZ_OPTS_verify	= -close_fd_mask=2
FZ_LIBS	= -lkeyutils -pthread
FZ_DEPS	= tests/fuzz/stubs.h $(D_SRCS) $(D_HDRS) $(C_SRCS) $(C_HDRS) \
	build/sqlmig.c
FUZZ_BINS = $(FUZZERS:%=tests/fuzz/fuzz_%)
FUZZ_RUNS = tests/fuzz/run_batch tests/fuzz/run_conf tests/fuzz/run_status \
	tests/fuzz/run_atr tests/fuzz/run_verify

tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FZ_DEPS)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell $(PKG) --cflags $(FZ_PKGS_$*)) \
	    -o $@ $< $(FZ_SRCS_$*) $(shell $(PKG) --libs $(FZ_PKGS_$*)) \
	    $(FZ_LIBS)

# The same harnesses without libFuzzer, for make check: they replay the
# corpora and the regressions (tests/fuzz/check_regress.sh).
tests/fuzz/run_%: tests/fuzz/fuzz_%.c tests/fuzz/runner.c $(FZ_DEPS)
	$(CC) $(WARN) $(CFLAGS) $(shell $(PKG) --cflags $(FZ_PKGS_$*)) \
	    -o $@ $< tests/fuzz/runner.c $(FZ_SRCS_$*) \
	    $(shell $(PKG) --libs $(FZ_PKGS_$*)) $(FZ_LIBS)

tests/fuzz/check_regress: tests/fuzz/check_regress.sh $(FUZZ_RUNS)
	cp tests/fuzz/check_regress.sh $@ && chmod +x $@

# Seed databases for fuzz_verify, written by the daemon's own db.c.
tests/fuzz/mkdb: tests/fuzz/mkdb.c daemon/db.c daemon/dbhash.c daemon/sign.c \
    daemon/date.c build/sqlmig.c $(D_HDRS)
	$(CC) $(WARN) $(CFLAGS) -pthread -o $@ tests/fuzz/mkdb.c daemon/db.c \
	    daemon/dbhash.c daemon/sign.c daemon/date.c build/sqlmig.c \
	    $(shell $(PKG) --libs sqlite3 libsodium)

# One fuzzer's bounded run; its statistics are printed at the end.
fuzz_one = mkdir -p tests/fuzz/work/$(1); \
	echo "fuzz_$(1): $(FUZZ_SECONDS) s"; \
	tests/fuzz/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -timeout=25 \
	    -artifact_prefix=tests/fuzz/work/$(1)/ \
	    $(FZ_OPTS_$(1)) tests/fuzz/work/$(1) tests/fuzz/corpus/$(1) \
	    $(wildcard tests/fuzz/regress/$(1)) \
	    2>tests/fuzz/work/$(1).log || { rc=1; \
	    echo "fuzz_$(1) FAILED: see tests/fuzz/work/$(1).log"; }; \
	grep -E '^(stat::|Done)' tests/fuzz/work/$(1).log;

fuzz: fuzz-deps $(FUZZ_BINS)
	@rc=0; $(foreach f,$(FUZZERS),$(call fuzz_one,$(f))) exit $$rc

# clang and its fuzzer runtime, installed when run as root.
fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_PKGS)"

# cardlicd (and its faults build), cardlicctl and the simulated PKCS#11
# module (it runs in the daemon's threads) under ThreadSanitizer, through
# the suites that run the daemon on the line and through the bench's
# feeds (BENCH_CARDS, default 10 here).  A report fails the target, not the test it ran in:
# every report goes to build/tsan/ and the target lists them at the end.
# tests/tsan.supp says why each suppression is not cardlicd's race.
TSAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_BINS = daemon/cardlicd daemon/cardlicd-faults ctl/cardlicctl \
	    sim/cardlic-sim-p11.so
TSAN_SUITES = tests/check_daemon tests/check_credit tests/check_service \
	      tests/check_ctl
# The checkpoint thread, beside the loop and the jobs.
TSAN_SUITES += tests/check_checkpoint
TSAN_OPTS = halt_on_error=0:second_deadlock_stack=1:exitcode=0:$\
	suppressions=$(CURDIR)/tests/tsan.supp:log_path=$(CURDIR)/build/tsan/report
check-tsan: sim $(TSAN_SUITES) bench/apdufloor bench/feed bench/floor
	$(MAKE) deps DEB_PKGS="$(DEB_PKGS) libtsan2"
	rm -f $(TSAN_BINS)
	$(MAKE) $(TSAN_BINS) CFLAGS="$(TSAN_FLAGS)"
	rm -rf build/tsan && mkdir -p build/tsan
	@rc=0; export TSAN_OPTIONS="$(TSAN_OPTS)"; \
	for t in $(TSAN_SUITES); do ./$$t || rc=1; done; \
	BENCH_CARDS=$${BENCH_CARDS:-10} BENCH_ROUNDS=1 \
	    BENCH_PARTS=cards,scaling BENCH_PROGS=cardlicd bench/run || rc=1; \
	rm -f $(TSAN_BINS); $(MAKE) $(TSAN_BINS); \
	n=$$(ls build/tsan | wc -l); \
	if [ "$$n" -ne 0 ]; then \
	    echo "ThreadSanitizer: $$n report files:"; ls build/tsan; rc=1; \
	else echo "ThreadSanitizer: no report"; fi; exit $$rc

# The daemon suite with cardlicd run under valgrind (tests/testdaemon.c
# puts CARDLIC_TEST_WRAPPER before its command line): no memory error and
# no definite leak, or the daemon exits 99 and the test that stops it
# fails.  Each daemon's report stays in build/valgrind/.  CARDLIC_TEST_SLOW
# gives every deadline of the tests that much more time.
VG_SUITES ?= tests/check_daemon
VG_CMD	= valgrind --error-exitcode=99 --leak-check=full $\
	--show-leak-kinds=definite --errors-for-leak-kinds=definite $\
	--track-fds=no $\
	--log-file=$(CURDIR)/build/valgrind/%p.log
check-valgrind: all $(VG_SUITES)
	$(MAKE) deps DEB_PKGS="$(DEB_PKGS) valgrind"
	rm -rf build/valgrind && mkdir -p build/valgrind
	@rc=0; for t in $(VG_SUITES); do \
	    CARDLIC_TEST_WRAPPER="$(VG_CMD)" CARDLIC_TEST_SLOW=$${CARDLIC_TEST_SLOW:-8} \
	    CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-8} ./$$t || rc=1; \
	done; \
	bad=$$(grep -l -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' \
	    build/valgrind/*.log 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "valgrind reports: $$bad"; rc=1; \
	else echo "valgrind: no error, no definite leak"; fi; exit $$rc

# A long run (see bench/soak): 5,000 cards on 8 readers with random pulls,
# a pcscd restart and a SIGKILL of the daemon; RSS and fds sampled every
# 250 cards to bench/results/, reconcile exact at the end.  Not part of
# make check: it takes a while.
soak: deps all
	bench/soak

bench/apdufloor: bench/apdufloor.c
	$(CC) $(SIM_CFLAGS) $(PIE) $(LDFLAGS) -o $@ bench/apdufloor.c \
	    $(SIM_LIBS)

# Issue 12's bench tools: a light feeder for the line (libpcsclite only),
# and the durable floor (bench/floorrun runs both).
bench/feed: bench/feed.c
	$(CC) $(SIM_CFLAGS) $(PIE) $(LDFLAGS) -o $@ bench/feed.c $(SIM_LIBS) \
	    -pthread

bench/floor: bench/floor.c
	$(CC) $(SIM_CFLAGS) $(PIE) $(LDFLAGS) -o $@ bench/floor.c \
	    $(shell $(PKG) --libs libpcsclite p11-kit-1 sqlite3) -pthread

bench-floor: deps sim bench/floor bench/feed
	bench/floorrun

# What signing costs (issue 11): sign and check per row, and verify --key
# over SIGNCOST_ROWS rows (default 1,000,000; see bench/README).
bench/signcost: bench/signcost.c daemon/sign.c daemon/dbhash.c \
    daemon/sign.h daemon/dbhash.h daemon/auditrow.h build/sqlmig.c
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -DTOPDIR='"$(CURDIR)"' $(PIE) \
	    $(LDFLAGS) -o $@ bench/signcost.c daemon/sign.c daemon/dbhash.c \
	    build/sqlmig.c $(shell $(PKG) --libs sqlite3 libsodium)

# A station's audit database of ROWS rows for make bench-audit (issue 12),
# through the daemon's own hash, signatures and migrations.
bench/mkaudit: bench/mkaudit.c daemon/sign.c daemon/dbhash.c \
    daemon/sign.h daemon/dbhash.h daemon/auditrow.h build/sqlmig.c
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) $(PIE) $(LDFLAGS) -o $@ \
	    bench/mkaudit.c daemon/sign.c daemon/dbhash.c build/sqlmig.c \
	    $(shell $(PKG) --libs sqlite3 libsodium)

# Every cardlicctl question timed on 1,000,000 rows (bench/audit).
bench-audit: bench/mkaudit ctl/cardlicctl
	bench/audit

bench-sign: bench/signcost ctl/cardlicctl
	@d=$$(mktemp -d /tmp/cardlicd-signcost-XXXXXX) && \
	bench/signcost $$d; rc=$$?; rm -rf $$d; exit $$rc

# Figures, printed and kept as JSON in bench/results/ (bench/run): cardlicd
# per card against its durable floor (bench/floor) and a Python peer
# (bench/peer.py), interleaved on 1, 4 and 8 readers; per step; scaling on
# one and two batch cards; per card at 0 and 1,000,000 audit rows.
bench: deps all bench/feed bench/floor bench/mkaudit
	bench/run

# Issue 12's Python peer (pyscard + PyKCS11, the packages are in DEB_PKGS):
# 40 cards on 1, 4 and 8 readers, its figures per step, and its licenses
# checked.
# Issue 12: what cardlicd costs with nothing to do (60 s without cards,
# with the batch card, with licensed cards sitting in 8 readers), and
# where its resident memory goes (400 cards on 8 readers).
bench-idle: deps all
	bench/idle

bench-mem: deps all
	bench/mem --run

bench-peer: deps sim
	bench/peerrun
.PHONY: bench-peer bench-idle bench-mem

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
	    ctl/cardlicctl bench/apdufloor bench/signcost bench/feed \
	    bench/floor bench/mkaudit $(SIM_BINS) \
	    $(CHECKS) sim/*.o
	rm -rf build
	rm -f tests/fuzz/fuzz_batch tests/fuzz/fuzz_conf tests/fuzz/fuzz_status \
	    tests/fuzz/fuzz_atr tests/fuzz/fuzz_verify $(FUZZ_RUNS) tests/fuzz/mkdb
	rm -rf tests/fuzz/work

.PHONY: all sim deps check check-sanitize check-systemd check-hardening \
	check-faults check-faults-ci demo bench clean install uninstall \
	lint-man lint-unit lint-catalog lint-code fuzz fuzz-deps check-tsan \
	check-valgrind soak bench-sign bench-floor bench-audit
