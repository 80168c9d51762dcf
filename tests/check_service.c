/*
 * cardlicd as a service: the sd_notify protocol spoken over a real
 * datagram socket (READY, WATCHDOG, RELOADING, STOPPING), each PIN source
 * on the simulated line, the PIN kept out of logs, database and errors,
 * the privilege drop, and make install.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

static int	n_fd = -1;
static char	n_path[300], n_env[320];

/* A datagram socket where the daemon's NOTIFY_SOCKET points. */
static void
notify_open(void)
{
	struct sockaddr_un sa;

	snprintf(n_path, sizeof(n_path), "%s/notify.sock", tl_dir);
	unlink(n_path);
	n_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(n_fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(n_path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, n_path, strlen(n_path) + 1);
	ck_assert_int_eq(bind(n_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(n_env, sizeof(n_env), "NOTIFY_SOCKET=%s", n_path);
}

/*
 * Wait up to ms for a datagram holding the line want.  Everything read
 * is appended to seen (if given), one datagram per line, '|' between
 * the lines of one datagram.
 */
static int
notify_wait(const char *want, int ms, char *seen, size_t seenlen)
{
	long end = tl_now_ms() + ms;
	struct pollfd p = { n_fd, POLLIN, 0 };
	char buf[1024], *line, *save;
	ssize_t n;
	int left, found = 0;

	while (!found && (left = (int)(end - tl_now_ms())) > 0) {
		if (poll(&p, 1, left) <= 0)
			continue;
		if ((n = recv(n_fd, buf, sizeof(buf) - 1, 0)) <= 0)
			continue;
		buf[n] = '\0';
		for (line = strtok_r(buf, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			if (seen != NULL && strlen(seen) + strlen(line) + 2 <
			    seenlen) {
				strcat(seen, line);
				strcat(seen, "|");
			}
			if (strcmp(line, want) == 0)
				found = 1;
		}
		if (seen != NULL && strlen(seen) + 2 < seenlen)
			strcat(seen, "\n");
	}
	return found;
}

static int
notify_count(const char *want, int ms)
{
	long end = tl_now_ms() + ms;
	int n = 0, left;

	while ((left = (int)(end - tl_now_ms())) > 0)
		n += notify_wait(want, left, NULL, 0);
	return n;
}

START_TEST(ready_reload_stop_protocol)
{
	char second[] = "/tmp/cardlic-svc-XXXXXX", sock[300], seen[8192] = "";
	char *env[3], *blk, *p;
	unsigned long long v;
	pid_t r;
	int st, n = 0;

	ck_assert_ptr_nonnull(mkdtemp(second));
	snprintf(sock, sizeof(sock), "PCSCLITE_CSOCK_NAME=%s/run/pcscd.comm",
	    second);
	notify_open();
	env[0] = n_env;
	env[1] = sock;
	env[2] = NULL;
	d_config("notify", "1234", NULL);
	/* pcscd is not there yet: no READY, even with the database open. */
	d_start_env(env, 0);
	ck_assert(!notify_wait("READY=1", 1500, seen, sizeof(seen)));
	ck_assert_int_eq(qn("PRAGMA user_version"), 7);
	tl_sh(TOPDIR "/sim/line up --dir %s --readers 2 >/dev/null", second);
	/* The watcher retries pcscd every 5 s at most; three suites run. */
	ck_assert_msg(notify_wait("READY=1", 20000, seen, sizeof(seen)),
	    "no READY=1 once pcscd is up: %s", seen);
	ck_assert(d_log_has("connected to pcscd"));
	ck_assert(notify_wait("STATUS=running: issued 0, skipped 0, failed 0,"
	    " credits used 0, in doubt 0; 0 batch cards, 0 exhausted", 2000,
	    seen, sizeof(seen)));
	/* SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1. */
	seen[0] = '\0';
	kill(d_pid, SIGHUP);
	ck_assert(notify_wait("READY=1", 3000, seen, sizeof(seen)));
	ck_assert_msg(strncmp(seen, "RELOADING=1|MONOTONIC_USEC=", 27) == 0,
	    "%s", seen);
	/*
	 * The loop's thread alone takes SIGTERM, SIGINT and SIGHUP; every
	 * other thread (the watcher at least) blocks them, so that the stop
	 * can hold them off while it gives them up.
	 */
	blk = tl_read("cd /proc/%d/task && for t in *; do printf '%%s ' "
	    "\"$([ $t = %d ] && echo loop || echo other)\"; awk '/^SigBlk/ "
	    "{ print $2 }' $t/status; done", (int)d_pid, (int)d_pid);
	for (p = strtok(blk, "\n"); p != NULL; p = strtok(NULL, "\n"), n++) {
		v = strtoull(strchr(p, ' ') + 1, NULL, 16);
		ck_assert_msg((v & 0x4003) == (strncmp(p, "loop", 4) == 0 ?
		    0 : 0x4003), "a thread's blocked signals: %s", p);
	}
	ck_assert_int_ge(n, 2);
	free(blk);
	/* SIGTERM: STOPPING=1. */
	kill(d_pid, SIGTERM);
	ck_assert(notify_wait("STOPPING=1", 3000, seen, sizeof(seen)));
	/*
	 * More SIGTERMs all through the shutdown (an impatient admin): the
	 * daemon still closes everything and exits 0.  Once, a second one
	 * came after the loop had given the signal back its default action.
	 */
	while ((r = waitpid(d_pid, &st, WNOHANG)) == 0) {
		kill(d_pid, SIGTERM);
		usleep(200);
	}
	ck_assert_int_eq(r, d_pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "cardlicd ended "
	    "badly under repeated SIGTERMs: %d", st);
	tl_sh(TOPDIR "/sim/line down --dir %s >/dev/null; rm -rf %s", second,
	    second);
}
END_TEST

START_TEST(watchdog_follows_the_watcher)
{
	char *env[3], *pid;

	notify_open();
	env[0] = n_env;
	env[1] = "WATCHDOG_USEC=1000000";
	env[2] = NULL;
	d_config("wd", "1234", NULL);
	d_start_env(env, 1);
	/* Healthy: a ping every half interval. */
	ck_assert_int_ge(notify_count("WATCHDOG=1", 2200), 3);
	/* pcscd frozen: the watcher hangs in its PC/SC call, pings stop. */
	pid = tl_read("cat %s/pcscd.pid", tl_dir);
	kill(atoi(pid), SIGSTOP);
	notify_count("WATCHDOG=1", 1200);
	ck_assert_int_eq(notify_count("WATCHDOG=1", 2000), 0);
	d_wait_log("watchdog not fed: the reader watcher has stopped "
	    "reporting", 1000);
	/* pcscd back: pings again. */
	kill(atoi(pid), SIGCONT);
	ck_assert_int_ge(notify_count("WATCHDOG=1", 3000), 1);
	free(pid);
	d_stop();
}
END_TEST

/*
 * The counts in STATUS= come from the audit rows at start-up: a restart
 * does not show "issued 0" on a line that issued all day.
 */
START_TEST(totals_survive_a_restart)
{
	char *env[2], seen[8192] = "";

	notify_open();
	env[0] = n_env;
	env[1] = NULL;
	d_config("tot", "1234", NULL);
	tl_insert(0, "tot-batch", "--type batch --credits 10");
	d_start_env(env, 1);
	tl_insert(1, "TOT1", "--type target --serial TOT1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	tl_insert(1, "TOT2", "--type target --serial TOT2 --preload "
	    "20260101:20301231");
	wait_n("SELECT count(*) FROM audit WHERE state = 'skipped'", 1, 5000);
	tl_remove(1);
	d_stop();
	d_start_env(env, 1);
	ck_assert_msg(notify_wait("STATUS=running: issued 1, skipped 1, failed "
	    "0, credits used 1, in doubt 0; 1 batch card, 0 exhausted", 5000,
	    seen, sizeof(seen)), "%s", seen);
	d_stop();
	tl_remove(0);
}
END_TEST

/* One card through the daemon with the PIN from the configured source. */
static void
one_card(const char *card)
{
	tl_insert(0, "src-batch", "--type batch --credits 50");
	tl_insert(1, card, "--type target --serial %s", card);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	d_stop();
	tl_remove(1);
}

START_TEST(pin_from_credential)
{
	char env0[400], *env[2];

	tl_sh("mkdir -p %s/creds && printf '1234' > %s/creds/cardlicd-pin && "
	    "chmod 400 %s/creds/cardlicd-pin", tl_dir, tl_dir, tl_dir);
	snprintf(env0, sizeof(env0), "CREDENTIALS_DIRECTORY=%s/creds",
	    tl_dir);
	env[0] = env0;
	env[1] = NULL;
	d_config_pin("cred", "pin-credential = cardlicd-pin", NULL);
	d_start_env(env, 1);
	one_card("CRED01");
}
END_TEST

START_TEST(pin_from_keyring)
{
	char cmd[1200];
	char *argv[] = { "keyctl", "session", "-", "/bin/sh", "-c", cmd,
	    NULL };

	d_config_pin("key", "pin-keyring = cardlicd:test-pin", NULL);
	/*
	 * A session keyring of its own, holding the key, for the daemon;
	 * keyctl's own words about it go nowhere.
	 */
	snprintf(cmd, sizeof(cmd), "exec 2>/dev/null; keyctl add user "
	    "cardlicd:test-pin 1234 @s >/dev/null && exec " CARDLICD
	    " --allow-root -f %s 2>>%s", d_conf, d_log);
	d_spawn(argv, NULL, 1);
	one_card("KEY01");
}
END_TEST

START_TEST(pin_in_conf_and_in_file)
{
	d_config_pin("inconf", "pin = 1234", NULL);
	d_start();
	one_card("CONF01");
	d_config("infile", "1234", NULL);
	d_start();
	one_card("FILE01");
}
END_TEST

START_TEST(pin_sources_refused_clearly)
{
	char *out;

	d_config("perm", "1234", NULL);
	tl_sh("chmod 644 %s/perm.pin", tl_dir);
	out = tl_read(CARDLICD " -n -f %s 2>&1; echo \"exit $?\"", d_conf);
	ck_assert_msg(strstr(out, "perm.conf:7: ") && strstr(out, "perm.pin: "
	    "this file holds the PIN but others may read it (mode 0644); run "
	    "chmod 0640 on it") && strstr(out, "exit 2"), "%s", out);
	free(out);
	d_config_pin("nocred", "pin-credential = cardlicd-pin", NULL);
	out = tl_read("env -u CREDENTIALS_DIRECTORY " CARDLICD " --allow-root "
	    "-f %s 2>&1; echo \"exit $?\"", d_conf);
	ck_assert_msg(strstr(out, "nocred.conf:7: pin-credential cardlicd-pin:"
	    " CREDENTIALS_DIRECTORY is not set") && strstr(out, "exit 2"),
	    "%s", out);
	free(out);
	d_config_pin("nokey", "pin-keyring = cardlicd:absent", NULL);
	out = tl_read("keyctl session - " CARDLICD " --allow-root -f %s 2>&1;"
	    " echo \"exit $?\"", d_conf);
	ck_assert_msg(strstr(out, "nokey.conf:7: pin-keyring: no key "
	    "\"cardlicd:absent\" of type user") && strstr(out, "exit 2"), "%s",
	    out);
	free(out);
	d_config_pin("two", "pin = 1234\npin-keyring = x", NULL);
	out = tl_read(CARDLICD " -n -f %s 2>&1; echo \"exit $?\"", d_conf);
	ck_assert_msg(strstr(out, "two.conf:8: pin-keyring: a PIN source is "
	    "already given (pin, line 7)") && strstr(out, "exit 2"), "%s",
	    out);
	free(out);
}
END_TEST

START_TEST(pin_never_leaks)
{
	char *out, *limits;

	/* A PIN that appears nowhere else, right on one card, wrong on two. */
	d_config("leak", "58213", NULL);
	d_start();
	limits = tl_read("grep 'Max core file size' /proc/%d/limits",
	    (int)d_pid);
	ck_assert_msg(strstr(limits, " 0 ") != NULL, "%s", limits);
	free(limits);
	tl_insert(0, "leak-batch", "--type batch --credits 5");
	tl_insert(1, "LEAK01", "--type target --serial LEAK01 --pin 58213");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	tl_insert(2, "LEAK02", "--type target --serial LEAK02 --pin 1111");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 5000);
	kill(d_pid, SIGHUP);
	d_wait_log("stays paused", 3000);
	d_stop();
	out = tl_read("grep -c 58213 %s; sqlite3 %s .dump | grep -c 58213; "
	    "strings %s %s-wal 2>/dev/null | grep -c 58213", d_log, d_db, d_db,
	    d_db);
	ck_assert_str_eq(out, "0\n0\n0\n");
	free(out);
	/* Nor in error messages about the file that holds it. */
	tl_sh("printf '[pkcs11]\\nmodule = /x\\npin = 58213\\n' > "
	    "%s/leak2.conf && chmod 644 %s/leak2.conf", tl_dir, tl_dir);
	out = tl_read(CARDLICD " -n -f %s/leak2.conf 2>&1", tl_dir);
	ck_assert_msg(strstr(out, "others may read it") && !strstr(out,
	    "58213"), "%s", out);
	free(out);
	d_config_pin("leak3", "pin = 58213", NULL);
	out = tl_read(CARDLICD " -n -f %s 2>&1", d_conf);
	ck_assert_msg(strstr(out, "pin = ********") && !strstr(out, "58213"),
	    "%s", out);
	free(out);
	tl_remove(1);
	tl_remove(2);
}
END_TEST

START_TEST(drops_to_its_user)
{
	char *out, extra[200];
	char *argv[] = { CARDLICD, "-f", d_conf, NULL };

	/* The database directory belongs to the service user. */
	tl_sh("chmod 755 %s && mkdir -p %s/svc && chown nobody %s/svc", tl_dir,
	    tl_dir, tl_dir);
	snprintf(extra, sizeof(extra), "[station]\nuser = nobody");
	d_config("drop", "1234", extra);
	tl_sh("sed -i 's|^database = .*|database = %s/svc/drop.db|' %s",
	    tl_dir, d_conf);
	snprintf(d_db, 300, "%s/svc/drop.db", tl_dir);
	d_spawn(argv, NULL, 1);
	out = tl_read("awk '/^Uid:/ { print $2, $3, $4, $5 }' /proc/%d/status",
	    (int)d_pid);
	ck_assert_str_eq(out, "65534 65534 65534 65534\n");
	free(out);
	ck_assert(d_log_has("running as user nobody"));
	one_card("DROP01");
	/* No such user: refused, and nothing runs as root. */
	tl_sh("sed -i 's/^user = nobody/user = nosuchuser42/' %s", d_conf);
	out = tl_read(CARDLICD " -f %s 2>&1; echo \"exit $?\"", d_conf);
	ck_assert_msg(strstr(out, "refusing to run as root, and user "
	    "\"nosuchuser42\"") && strstr(out, "exit 1"), "%s", out);
	free(out);
}
END_TEST

START_TEST(make_install_lists_its_files)
{
	char root[] = "/tmp/cardlic-inst-XXXXXX";
	char *out;

	ck_assert_ptr_nonnull(mkdtemp(root));
	tl_sh("make -s -C " TOPDIR " install DESTDIR=%s PREFIX=/usr "
	    ">/dev/null", root);
	out = tl_read("cd %s && find . -type f -printf '%%m %%p\\n' | sort",
	    root);
	ck_assert_str_eq(out,
	    "640 ./etc/cardlicd/cardlicd.conf\n"
	    "644 ./usr/lib/systemd/catalog/cardlicd.catalog\n"
	    "644 ./usr/lib/systemd/system/cardlicd.service\n"
	    "644 ./usr/lib/sysusers.d/cardlicd.conf\n"
	    "644 ./usr/lib/tmpfiles.d/cardlicd.conf\n"
	    "644 ./usr/share/cardlicd/sql/001-audit.sql\n"
	    "644 ./usr/share/cardlicd/sql/002-views.sql\n"
	    "644 ./usr/share/cardlicd/sql/003-in-doubt.sql\n"
	    "644 ./usr/share/cardlicd/sql/004-card-text.sql\n"
	    "644 ./usr/share/cardlicd/sql/005-signatures.sql\n"
	    "644 ./usr/share/cardlicd/sql/006-scale.sql\n"
	    "644 ./usr/share/cardlicd/sql/007-trust.sql\n"
	    "644 ./usr/share/man/man1/cardlicctl.1\n"
	    "644 ./usr/share/man/man5/cardlicd.conf.5\n"
	    "644 ./usr/share/man/man8/cardlicd.8\n"
	    "755 ./usr/bin/cardlicctl\n"
	    "755 ./usr/sbin/cardlicd\n");
	free(out);
	out = tl_read("grep ^ExecStart= %s/usr/lib/systemd/system/"
	    "cardlicd.service", root);
	ck_assert_str_eq(out, "ExecStart=/usr/sbin/cardlicd -f "
	    "/etc/cardlicd/cardlicd.conf\n");
	free(out);
	/* The admin's configuration survives a second install... */
	tl_sh("echo '# mine' >> %s/etc/cardlicd/cardlicd.conf", root);
	tl_sh("make -s -C " TOPDIR " install DESTDIR=%s PREFIX=/usr "
	    ">/dev/null", root);
	out = tl_read("tail -n 1 %s/etc/cardlicd/cardlicd.conf", root);
	ck_assert_str_eq(out, "# mine\n");
	free(out);
	/* ...and uninstall, which removes the rest. */
	tl_sh("make -s -C " TOPDIR " uninstall DESTDIR=%s PREFIX=/usr "
	    ">/dev/null", root);
	out = tl_read("cd %s && find . -type f | sort", root);
	ck_assert_str_eq(out, "./etc/cardlicd/cardlicd.conf\n");
	free(out);
	tl_sh("rm -rf %s", root);
}
END_TEST

static void
line_up(void)
{
	d_suite_up(4);
}

static Suite *
service_suite(void)
{
	Suite *s = suite_create("service");
	TCase *n = tcase_create("notify and watchdog");
	TCase *p = tcase_create("PIN and privileges");
	TCase *i = tcase_create("install");

	tcase_add_unchecked_fixture(n, line_up, d_suite_down);
	tcase_set_timeout(n, 60);
	tcase_add_test(n, ready_reload_stop_protocol);
	tcase_add_test(n, watchdog_follows_the_watcher);
	tcase_add_test(n, totals_survive_a_restart);
	suite_add_tcase(s, n);

	tcase_add_unchecked_fixture(p, line_up, d_suite_down);
	tcase_set_timeout(p, 60);
	tcase_add_test(p, pin_from_credential);
	tcase_add_test(p, pin_from_keyring);
	tcase_add_test(p, pin_in_conf_and_in_file);
	tcase_add_test(p, pin_sources_refused_clearly);
	tcase_add_test(p, pin_never_leaks);
	tcase_add_test(p, drops_to_its_user);
	suite_add_tcase(s, p);

	tcase_set_timeout(i, 60);
	tcase_add_test(i, make_install_lists_its_files);
	suite_add_tcase(s, i);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(service_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
