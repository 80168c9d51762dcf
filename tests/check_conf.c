/*
 * The configuration check, without a simulated line: conf.c is included
 * here, so that its parser, its ranges and the start-date policies are
 * tested directly, and the golden table of broken files in tests/conf/
 * is run through "cardlicd -n".
 *
 * A golden case is tests/conf/NN-name.conf and tests/conf/NN-name.expected,
 * the exact stderr of "cardlicd -n --allow-root -f FILE", with the
 * temporary directory written @DIR@ and the source tree @TOP@.  In the
 * .conf, @DIR@ and @TOP@ are replaced the same way, @NUL@ becomes a NUL
 * byte, and lines "#test: ..." set up the case:
 *   #test: mode 0644        the file's mode (default 0600)
 *   #test: group nogroup    chown root:GROUP
 *   #test: unit             run without --allow-root: the unit's checks
 *   #test: link             -f names a symbolic link to the file
 *   #test: file PATH        -f PATH instead of the file
 *   #test: example          the file is conf/cardlicd.conf, its module and
 *                           pin-file pointed at the simulator and @DIR@/pin
 * CONF_GOLDEN_UPDATE=1 rewrites the .expected files from what cardlicd
 * says now: read the diff before committing it.
 */
#include "../daemon/conf.c"

#include <check.h>
#include <dirent.h>

#define CARDLICD	TOPDIR "/daemon/cardlicd"
#define GOLDEN		TOPDIR "/tests/conf"
#define SIM_AT		"@TOP@/sim/cardlic-sim-p11.so"
#define EXAMPLE_MODULE	"/usr/lib/x86_64-linux-gnu/pkcs11/vendor-middleware.so"

static char	cc_dir[64];

static char *
cc_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static void
cc_write(const char *path, const char *buf, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* s with every "from" replaced by "to" (to may hold a NUL: tolen). */
static char *
cc_replace(char *s, size_t *len, const char *from, const char *to,
    size_t tolen)
{
	size_t fl = strlen(from), n = 0, cap = *len * 2 + 4096, i = 0;
	char *out = malloc(cap);

	ck_assert_ptr_nonnull(out);
	while (i < *len) {
		if (n + tolen + 1 >= cap) {
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		if (i + fl <= *len && memcmp(s + i, from, fl) == 0) {
			memcpy(out + n, to, tolen);
			n += tolen;
			i += fl;
		} else
			out[n++] = s[i++];
	}
	out[n] = '\0';
	free(s);
	*len = n;
	return out;
}

static void
cc_setup(void)
{
	char path[128], big[5001];
	int rc;

	snprintf(cc_dir, sizeof(cc_dir), "/tmp/cardlicd-conf-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(cc_dir));
	/* The service user of the unit cases must reach the files. */
	chmod(cc_dir, 0755);
	snprintf(path, sizeof(path), "%s/pin", cc_dir);
	cc_write(path, "1234\n", 5, 0600);
	snprintf(path, sizeof(path), "%s/pin-open", cc_dir);
	cc_write(path, "1234\n", 5, 0644);
	snprintf(path, sizeof(path), "%s/pin-group", cc_dir);
	cc_write(path, "1234\n", 5, 0640);
	rc = chown(path, 0, 100);
	ck_assert_int_eq(rc, 0);
	snprintf(path, sizeof(path), "%s/pin-twolines", cc_dir);
	cc_write(path, "1234\n5678\n", 10, 0600);
	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(path, sizeof(path), "%s/pin-huge", cc_dir);
	cc_write(path, big, sizeof(big) - 1, 0600);
	snprintf(path, sizeof(path), "%s/notp11", cc_dir);
	cc_write(path, big, 200, 0644);
	snprintf(path, sizeof(path), "%s/pin-dir", cc_dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	rc = symlink("pin", strcat(strcpy(big, cc_dir), "/pin-link"));
	ck_assert_int_eq(rc, 0);
}

static void
cc_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", cc_dir);
	if (cc_dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", cc_dir);
}

/* Every stderr line a warning, or none: then and only then status 0. */
static int
cc_only_warnings(const char *err)
{
	const char *s = err, *nl;

	for (; *s != '\0'; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			return 0;
		if (memmem(s, (size_t)(nl - s), ": warning: ", 11) == NULL)
			return 0;
	}
	return 1;
}

/*
 * One golden case; returns a description of the difference, or NULL.
 */
static char *
cc_golden(const char *name)
{
	char src[600], conf[256], target[600], errf[300], cmd[2048];
	char exp[600], *text, *want, *got, *msg, *d, *e;
	char group[32] = "", mode[8] = "0600", *dup;
	size_t len, glen;
	int unit = 0, link = 0, rc, st;

	snprintf(src, sizeof(src), "%s/%s", GOLDEN, name);
	text = cc_read(src, &len);
	ck_assert_ptr_nonnull(text);
	snprintf(conf, sizeof(conf), "%s/%.*s", cc_dir,
	    (int)(strlen(name) - 5), name);
	snprintf(target, sizeof(target), "%s.conf", conf);
	dup = strdup(text);
	for (d = strtok(dup, "\n"); d != NULL; d = strtok(NULL, "\n")) {
		if (strncmp(d, "#test: ", 7) != 0)
			continue;
		d += 7;
		if (strncmp(d, "mode ", 5) == 0)
			snprintf(mode, sizeof(mode), "%s", d + 5);
		else if (strncmp(d, "group ", 6) == 0)
			snprintf(group, sizeof(group), "%s", d + 6);
		else if (strcmp(d, "unit") == 0)
			unit = 1;
		else if (strcmp(d, "link") == 0)
			link = 1;
		else if (strncmp(d, "file ", 5) == 0)
			snprintf(target, sizeof(target), "%s", d + 5);
		else if (strcmp(d, "example") == 0) {
			free(text);
			text = cc_read(TOPDIR "/conf/cardlicd.conf", &len);
			ck_assert_ptr_nonnull(text);
			text = cc_replace(text, &len, EXAMPLE_MODULE, SIM_AT,
			    strlen(SIM_AT));
			text = cc_replace(text, &len, "/etc/cardlicd/pin",
			    "@DIR@/pin", 9);
		} else
			ck_abort_msg("%s: unknown directive \"%s\"", name, d);
	}
	free(dup);
	text = cc_replace(text, &len, "@DIR@", cc_dir, strlen(cc_dir));
	text = cc_replace(text, &len, "@TOP@", TOPDIR, strlen(TOPDIR));
	text = cc_replace(text, &len, "@NUL@", "", 1);
	snprintf(src, sizeof(src), "%s%s", conf, link ? ".real" : ".conf");
	cc_write(src, text, len, (mode_t)strtol(mode, NULL, 8));
	free(text);
	if (group[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "chown root:%s %s", group, src);
		ck_assert_int_eq(system(cmd), 0);
	}
	if (link) {
		snprintf(cmd, sizeof(cmd), "%s.conf", conf);
		ck_assert_int_eq(symlink(src, cmd), 0);
	}
	snprintf(errf, sizeof(errf), "%s.err", conf);
	snprintf(cmd, sizeof(cmd), "cd %s && TZ=UTC CARDLIC_TODAY=20261124 "
	    "timeout 10 " CARDLICD " -n %s-f %s >/dev/null 2>%s", cc_dir,
	    unit ? "" : "--allow-root ", target, errf);
	st = system(cmd);
	rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	got = cc_read(errf, &glen);
	ck_assert_ptr_nonnull(got);
	got = cc_replace(got, &glen, cc_dir, "@DIR@", 5);
	got = cc_replace(got, &glen, TOPDIR, "@TOP@", 5);
	snprintf(exp, sizeof(exp), "%s/%.*s.expected", GOLDEN,
	    (int)(strlen(name) - 5), name);
	if (getenv("CONF_GOLDEN_UPDATE") != NULL)
		cc_write(exp, got, glen, 0644);
	want = cc_read(exp, NULL);
	msg = NULL;
	if (want == NULL)
		e = "no .expected file";
	else if (strcmp(want, got) != 0)
		e = "stderr differs";
	else if (rc != (cc_only_warnings(got) ? 0 : 2))
		e = "wrong exit status";
	else
		e = NULL;
	if (e != NULL && asprintf(&msg, "%s: %s (exit %d)\n--- want\n%s"
	    "--- got\n%s", name, e, rc, want != NULL ? want : "", got) < 0)
		msg = strdup(name);
	free(want);
	free(got);
	return msg;
}

static int
cc_is_conf(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

START_TEST(golden_broken_configurations)
{
	struct dirent **list;
	char *msg, *all = NULL;
	int n, i, failed = 0;

	n = scandir(GOLDEN, &list, cc_is_conf, alphasort);
	ck_assert_int_ge(n, 30);
	for (i = 0; i < n; i++) {
		if ((msg = cc_golden(list[i]->d_name)) != NULL) {
			fprintf(stderr, "%s\n", msg);
			failed++;
			if (all == NULL)
				all = msg;
			else
				free(msg);
		}
		free(list[i]);
	}
	free(list);
	ck_assert_msg(failed == 0, "%d of %d golden cases failed; the first:"
	    "\n%s", failed, n, all);
}
END_TEST

/* conf_load on text; NULL and err set on a mistake. */
static struct conf *
cc_load(const char *text, char *err, size_t len)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/unit.conf", cc_dir);
	cc_write(path, text, strlen(text), 0600);
	err[0] = '\0';
	return conf_load(path, CONF_CHECK_ONLY, err, len);
}

#define CC_BASE "[pkcs11]\nmodule = /x.so\npin = 1234\n"

/* Accepted, or refused with this message after "file:line: ". */
static void
cc_expect(const char *text, const char *want)
{
	struct conf *c;
	char err[1024];

	c = cc_load(text, err, sizeof(err));
	if (want == NULL) {
		ck_assert_msg(c != NULL, "refused: %s\n%s", err, text);
		conf_unref(c);
		return;
	}
	ck_assert_msg(c == NULL && strstr(err, want) != NULL,
	    "want \"%s\", got \"%s\" for\n%s", want, err, text);
}

START_TEST(ranges_at_their_bounds)
{
	cc_expect(CC_BASE "[license]\nrenew-within-days = 0\n", NULL);
	cc_expect(CC_BASE "[license]\nrenew-within-days = 3650\n", NULL);
	cc_expect(CC_BASE "[license]\nrenew-within-days = 3651\n",
	    ":5: renew-within-days: \"3651\" is not a whole number in "
	    "0..3650");
	cc_expect(CC_BASE "[license]\nrenew-within-days = 1x\n",
	    ":5: renew-within-days: \"1x\"");
	cc_expect(CC_BASE "[license]\nstart-policy = today-plus\n"
	    "start-offset-days = 366\n", NULL);
	cc_expect(CC_BASE "[license]\nstart-policy = today-plus\n"
	    "start-offset-days = 367\n", ":6: start-offset-days: \"367\"");
	cc_expect(CC_BASE "[license]\nstart-policy = today-plus\n"
	    "start-offset-days = 0\n", ":5: start-policy today-plus needs "
	    "start-offset-days (1..366)");
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 20000101\n", NULL);
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 20991231\n", NULL);
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 19991231\n", ":6: start-date: \"19991231\" is not "
	    "a date YYYYMMDD between 20000101 and 20991231");
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 20240229\n", NULL);
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 20230229\n", ":6: start-date: \"20230229\"");
	cc_expect(CC_BASE "[license]\nstart-policy = fixed\n"
	    "start-date = 20260431\n", ":6: start-date: \"20260431\"");
	cc_expect("[pkcs11]\nmodule = /x.so\npin = 123\n",
	    ":3: pin: must be 4 to 64 characters long");
	cc_expect("[pkcs11]\nmodule = /x.so\npin = "
	    "1234567890123456789012345678901234567890123456789012345678901234"
	    "\n", NULL);
	cc_expect("[pkcs11]\nmodule = /x.so\npin = "
	    "12345678901234567890123456789012345678901234567890123456789012345"
	    "\n", ":3: pin: must be 4 to 64 characters long");
}
END_TEST

START_TEST(lists_stay_lists_and_lines_are_long)
{
	struct conf *c;
	char err[1024], text[2048], path[300];

	c = cc_load(CC_BASE "[readers]\ninclude = A*\ninclude = B*\n"
	    "exclude = *C\nexclude = *D\n[classify]\nbatch-reader = A 00\n"
	    "batch-reader = A 01\nignore-atr = 3B00\nignore-atr = 3B01\n",
	    err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_int_eq(c->n_include, 2);
	ck_assert_int_eq(c->n_exclude, 2);
	ck_assert_int_eq(c->n_rules, 4);
	ck_assert_str_eq(c->include[1], "B*");
	conf_unref(c);
	/* inih stopped at 199 characters; a path of 230 and a comment. */
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[230] = '\0';
	snprintf(text, sizeof(text), "# %0250d\n[station]\ndatabase = %s\n"
	    CC_BASE, 0, path);
	c = cc_load(text, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->database, path);
	ck_assert_int_eq(c->database_line, 3);
	conf_unref(c);
	/* An inline comment after a blank, as inih read it. */
	c = cc_load("[station]\nid = a ; the first line\n" CC_BASE, err,
	    sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->station, "a");
	conf_unref(c);
}
END_TEST

START_TEST(parser_mistakes_at_their_line)
{
	cc_expect("[station]\nid = a\n[license\nstart-policy = today\n",
	    ":3: \"[license\": a section header without its closing ']'");
	cc_expect("[station]\nid = a\n\n[station]\n",
	    ":4: [station] is given twice (first at line 1)");
	cc_expect(CC_BASE "module = /y.so\n",
	    ":4: module: given twice in [pkcs11] (first at line 2); keep one");
	cc_expect("id = a\n", ":1: id: before any [section]");
	cc_expect("[station]\nid a\n", ":2: not a valid line");
	cc_expect("[station]\n= a\n", ":2: not a valid line");
}
END_TEST

/* A NUL byte is an error at its line, not a value cut short. */
START_TEST(nul_byte_is_an_error)
{
	char path[128], err[1024];
	static const char text[] = "[station]\nid = a\n\ndatabase = /x\0y\n";

	snprintf(path, sizeof(path), "%s/nul.conf", cc_dir);
	cc_write(path, text, sizeof(text) - 1, 0600);
	ck_assert_ptr_null(conf_load(path, CONF_CHECK_ONLY, err, sizeof(err)));
	ck_assert_msg(strstr(err, "nul.conf:4: a NUL byte in this line") !=
	    NULL, "%s", err);
}
END_TEST

/* A FIFO is refused at once: open(2) must not wait for a writer. */
START_TEST(fifo_is_refused_without_waiting)
{
	char path[128], err[1024];

	snprintf(path, sizeof(path), "%s/fifo.conf", cc_dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_ptr_null(conf_load(path, CONF_CHECK_ONLY, err, sizeof(err)));
	ck_assert_msg(strstr(err, "fifo.conf: refused: a FIFO, not a regular "
	    "file") != NULL, "%s", err);
}
END_TEST

static struct conf *
cc_policy(enum start_policy pol, const char *start, long offset)
{
	static struct conf c;

	memset(&c, 0, sizeof(c));
	c.policy = pol;
	c.start_date = -1;
	if (start != NULL)
		ck_assert_int_eq(date_parse(start, 8, &c.start_date), 0);
	c.start_offset = offset;
	return &c;
}

static void
cc_start(const struct conf *c, const char *today, const char *want)
{
	char got[DATE_LEN + 1];
	long d;

	ck_assert_int_eq(date_parse(today, 8, &d), 0);
	date_format(conf_start_date(c, d), got);
	ck_assert_msg(strcmp(got, want) == 0, "policy %s, today %s: want %s, "
	    "got %s", conf_policy_name(c->policy), today, want, got);
}

START_TEST(start_dates_per_policy)
{
	const struct conf *c;

	c = cc_policy(START_TODAY, NULL, 0);
	cc_start(c, "20240229", "20240229");
	cc_start(c, "20261231", "20261231");
	c = cc_policy(START_FIXED, "20270101", 0);
	cc_start(c, "20261124", "20270101");
	cc_start(c, "20280301", "20270101");
	c = cc_policy(START_TODAY_PLUS, NULL, 7);
	cc_start(c, "20261124", "20261201");
	cc_start(c, "20240225", "20240303");	/* leap year */
	cc_start(c, "20230225", "20230304");
	cc_start(c, "20261228", "20270104");
	c = cc_policy(START_TODAY_PLUS, NULL, 366);
	cc_start(c, "20240101", "20250101");
	c = cc_policy(START_NEXT_MONTH, NULL, 0);
	cc_start(c, "20261124", "20261201");
	cc_start(c, "20261231", "20270101");
	cc_start(c, "20240131", "20240201");
	cc_start(c, "20240229", "20240301");
	cc_start(c, "20230228", "20230301");
	cc_start(c, "20260401", "20260501");
	c = cc_policy(START_LATER_OF, "20270101", 0);
	cc_start(c, "20261124", "20270101");
	cc_start(c, "20270101", "20270101");
	cc_start(c, "20270102", "20270102");
	c = cc_policy(START_LATER_OF, "20240229", 0);
	cc_start(c, "20240228", "20240229");
	cc_start(c, "20240301", "20240301");
}
END_TEST

/* The PIN file rules: what the unit needs passes, the rest is refused. */
START_TEST(pin_file_permissions)
{
	struct stat st;
	char err[300];

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0640;
	st.st_uid = 0;
	st.st_gid = 995;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), 0);
	st.st_mode = S_IFREG | 0600;
	st.st_uid = 995;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), 0);
	st.st_uid = 1000;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "this file holds the PIN but belongs to uid "
	    "1000, neither root nor the daemon's user (uid 995)");
	st.st_uid = 0;
	st.st_mode = S_IFREG | 0660;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "this file holds the PIN but its group may "
	    "write it (mode 0660); run chmod 0640 on it");
	st.st_mode = S_IFREG | 0640;
	st.st_gid = 100;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), -1);
	st.st_mode = S_IFREG | 0604;
	ck_assert_int_eq(pin_check_stat(&st, 995, 995, "holds the PIN", err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "this file holds the PIN but others may read it "
	    "(mode 0604); run chmod 0640 on it");
}
END_TEST

/*
 * cardlicd -n with [audit] key-file: what it says of a key file, the
 * whole line of it; *rc its exit status.  stdin is /dev/null and a
 * timeout runs: a key that asked for a passphrase would fail.
 */
static char *
cc_key(const char *key, int *rc)
{
	char conf[128], cmd[600], out[128], text[300];
	char *got;
	size_t len;
	int st;

	snprintf(conf, sizeof(conf), "%s/%s.conf", cc_dir, key);
	snprintf(text, sizeof(text), "[station]\nid = st1\n[pkcs11]\n"
	    "module = %s\npin = 1234\n[audit]\nkey-file = %s/%s\n",
	    TOPDIR "/sim/cardlic-sim-p11.so", cc_dir, key);
	cc_write(conf, text, strlen(text), 0600);
	snprintf(out, sizeof(out), "%s/%s.out", cc_dir, key);
	snprintf(cmd, sizeof(cmd), "timeout 10 " CARDLICD " -n --allow-root "
	    "-f %s </dev/null >%s 2>&1", conf, out);
	st = system(cmd);
	*rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	got = cc_read(out, &len);
	ck_assert_ptr_nonnull(got);
	return cc_replace(got, &len, cc_dir, "@DIR@", 5);
}

/*
 * Key files as openssl makes them: a key loads with openssl's public
 * key; an encrypted one, a key with its public key after it, and a
 * public key are refused, each with its reason and the file's line.
 */
START_TEST(key_files_made_by_openssl)
{
	char cmd[600], want[300], *got;
	FILE *f;
	int rc;

	snprintf(cmd, sizeof(cmd), "cd %s && openssl genpkey -algorithm "
	    "ed25519 -out good.key && openssl pkey -in good.key -pubout "
	    "-out good.pub && openssl genpkey -algorithm ed25519 "
	    "-aes-256-cbc -pass pass:secret -out enc.key && "
	    "cat good.key good.pub > both.key && cp good.pub pub.key && "
	    "chmod 600 *.key", cc_dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in %s/good.key -pubout "
	    "-outform DER | tail -c 32 | od -An -tx1 | tr -d ' \\n'", cc_dir);
	ck_assert_ptr_nonnull(f = popen(cmd, "r"));
	memcpy(want, "public key ", 11);
	ck_assert_ptr_nonnull(fgets(want + 11, 65, f));
	pclose(f);
	ck_assert_uint_eq(strlen(want), 75);

	got = cc_key("good.key", &rc);
	ck_assert_msg(rc == 0 && strstr(got, want) != NULL, "exit %d: %s",
	    rc, got);
	free(got);
	got = cc_key("enc.key", &rc);
	ck_assert_int_eq(rc, 2);
	ck_assert_str_eq(got, "cardlicd: @DIR@/enc.key.conf:7: "
	    "@DIR@/enc.key: an encrypted private key (-----BEGIN ENCRYPTED "
	    "PRIVATE KEY-----): refused, no passphrase is ever asked for "
	    "(openssl pkey can write it decrypted); make one with cardlicctl "
	    "keygen\n");
	free(got);
	got = cc_key("both.key", &rc);
	ck_assert_int_eq(rc, 2);
	ck_assert_str_eq(got, "cardlicd: @DIR@/both.key.conf:7: "
	    "@DIR@/both.key: text after the -----END PRIVATE KEY----- line "
	    "(line 4): a key file holds its key and nothing else; make one "
	    "with cardlicctl keygen\n");
	free(got);
	got = cc_key("pub.key", &rc);
	ck_assert_int_eq(rc, 2);
	ck_assert_str_eq(got, "cardlicd: @DIR@/pub.key.conf:7: "
	    "@DIR@/pub.key: a public key (-----BEGIN PUBLIC KEY-----), not a "
	    "private key; make one with cardlicctl keygen\n");
	free(got);
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");

	tcase_add_checked_fixture(tc, cc_setup, cc_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, ranges_at_their_bounds);
	tcase_add_test(tc, lists_stay_lists_and_lines_are_long);
	tcase_add_test(tc, parser_mistakes_at_their_line);
	tcase_add_test(tc, nul_byte_is_an_error);
	tcase_add_test(tc, fifo_is_refused_without_waiting);
	tcase_add_test(tc, start_dates_per_policy);
	tcase_add_test(tc, pin_file_permissions);
	tcase_add_test(tc, golden_broken_configurations);
	tcase_add_test(tc, key_files_made_by_openssl);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
