/*
 * The configuration file, an INI file.  Every key has a range or a set of
 * values; the first mistake is reported as file:line, and keys that the
 * chosen policy ignores as file:line warnings.  The parser is ours, not
 * inih: its line buffer (200 bytes, then freed unwiped) could neither
 * hold a long path nor be wiped of an inline PIN.
 * A configuration is immutable once loaded and reference-counted, so that
 * a reload (SIGHUP) never changes what a running job sees.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "cardlicd.h"
#include "dbhash.h"
#include "sign.h"

#define CONF_FILE_MAX	65536	/* bytes: a configuration is a page or two */
#define CONF_MAX_SEEN	32
#define CONF_MAX_WARN	8
#define CONF_STATE_DIR	"/var/lib/cardlicd"	/* the unit's StateDirectory */
#define CONF_KEY_MAX	4096	/* bytes: a PEM Ed25519 key is 119 */

struct conf_seen {
	int		 section;
	char		 key[32];
	int		 line;
};

struct conf_parse {
	struct conf	*c;
	int		 line;
	int		 section_line;	/* where the current [section] is */
	int		 err_line;
	char		 err[512];
	int		 policy_line;
	int		 pin_line;
	int		 seen_policy;
	int		 flags;
	struct stat	 st;		/* the file as opened */
	int		 section;	/* index in conf_sections, -1: none */
	int		 section_lines[6];
	struct conf_seen seen[CONF_MAX_SEEN];
	int		 n_seen;
	int		 date_line;
	int		 offset_line;
	int		 warn_line[CONF_MAX_WARN];
	char		 warn[CONF_MAX_WARN][300];
	int		 n_warn;
};

static const char *const conf_sections[] = {
	"station", "pkcs11", "readers", "classify", "license", "audit"
};

static const char *const conf_pin_keys[] = {
	"", "pin", "pin-file", "pin-credential", "pin-keyring"
};

static pthread_mutex_t	conf_lock = PTHREAD_MUTEX_INITIALIZER;
/* Loads so far: each configuration's number, for what keys on it. */
static unsigned long	conf_generation;

static const char *const conf_policies[] = {
	"today", "fixed", "today-plus", "next-month", "later-of"
};

const char *
conf_policy_name(enum start_policy p)
{
	return conf_policies[p];
}

static int
conf_fail(struct conf_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conf_fail(struct conf_parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err_line == 0) {
		p->err_line = p->line;
		va_start(ap, fmt);
		vsnprintf(p->err, sizeof(p->err), fmt, ap);
		va_end(ap);
	}
	return 0;
}

/* A key that the file gives but the chosen policy ignores. */
static void
conf_warn(struct conf_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conf_warn(struct conf_parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	if (p->n_warn == CONF_MAX_WARN)
		return;
	p->warn_line[p->n_warn] = line;
	va_start(ap, fmt);
	vsnprintf(p->warn[p->n_warn], sizeof(p->warn[0]), fmt, ap);
	va_end(ap);
	p->n_warn++;
}

static int
conf_copy(struct conf_parse *p, char *dst, size_t n, const char *key,
    const char *v)
{
	if (*v == '\0')
		return conf_fail(p, "%s: empty value", key);
	if (strlen(v) >= n)
		return conf_fail(p, "%s: longer than %zu characters", key,
		    n - 1);
	memcpy(dst, v, strlen(v) + 1);
	return 1;
}

static int
conf_number(struct conf_parse *p, long *out, const char *key, const char *v,
    long lo, long hi)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi)
		return conf_fail(p, "%s: \"%s\" is not a whole number in "
		    "%ld..%ld", key, v, lo, hi);
	*out = n;
	return 1;
}

static int
conf_path(struct conf_parse *p, char *dst, size_t n, const char *key,
    const char *v)
{
	if (v[0] != '/')
		return conf_fail(p, "%s: \"%s\" is not an absolute path", key,
		    v);
	return conf_copy(p, dst, n, key, v);
}

/* A [classify] rule: its syntax and meaning are classify.c's. */
static int
conf_rule(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;
	char err[200];

	if (c->n_rules == CONF_MAX_RULES)
		return conf_fail(p, "%s: more than %d rules", key,
		    CONF_MAX_RULES);
	if (classify_parse_rule(key, v, &c->rules[c->n_rules], err,
	    sizeof(err)) != 0)
		return conf_fail(p, "%s", err);
	c->n_rules++;
	return 1;
}

static int
conf_date(struct conf_parse *p, long *out, const char *key, const char *v)
{
	long d, lo = date_to_days(2000, 1, 1), hi = date_to_days(2099, 12, 31);

	if (date_parse(v, strlen(v), &d) != 0 || d < lo || d > hi)
		return conf_fail(p, "%s: \"%s\" is not a date YYYYMMDD between "
		    "20000101 and 20991231", key, v);
	*out = d;
	return 1;
}

static int
conf_timezone(struct conf_parse *p, const char *v)
{
	char path[PATH_MAX];
	const char *s;

	if (strcmp(v, "UTC") != 0 && strcmp(v, "local") != 0) {
		for (s = v; *s != '\0'; s++)
			if (!isalnum((unsigned char)*s) && strchr("/_-+", *s) ==
			    NULL)
				break;
		snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", v);
		if (*s != '\0' || strstr(v, "..") != NULL ||
		    access(path, R_OK) != 0)
			return conf_fail(p, "timezone: \"%s\" is not UTC, "
			    "local, or a zone of /usr/share/zoneinfo", v);
	}
	return conf_copy(p, p->c->timezone, sizeof(p->c->timezone),
	    "timezone", v);
}

/* Exactly one PIN source; the PIN itself is fetched in conf_finish. */
static int
conf_pin(struct conf_parse *p, enum pin_source src, const char *v)
{
	struct conf *c = p->c;
	const char *k = conf_pin_keys[src], *s;
	size_t n = strlen(v);

	if (c->pin_source != PIN_NONE)
		return conf_fail(p, "%s: a PIN source is already given (%s, "
		    "line %d); give exactly one of pin, pin-file, "
		    "pin-credential, pin-keyring", k,
		    conf_pin_keys[c->pin_source], p->pin_line);
	p->pin_line = p->line;
	c->pin_source = src;
	switch (src) {
	case PIN_CONF:
		if (n < 4 || n > PIN_MAX)
			return conf_fail(p, "pin: must be 4 to %d characters "
			    "long", PIN_MAX);
		memcpy(c->pin, v, n);
		c->pin_len = n;
		return 1;
	case PIN_FILE:
		return conf_path(p, c->pin_where, sizeof(c->pin_where), k, v);
	case PIN_CREDENTIAL:
		for (s = v; *s != '\0'; s++)
			if (!isalnum((unsigned char)*s) &&
			    strchr("._-", *s) == NULL)
				return conf_fail(p, "pin-credential: \"%s\" is "
				    "not a credential name (letters, digits, "
				    "'.', '_', '-')", v);
		return conf_copy(p, c->pin_where, sizeof(c->pin_where), k, v);
	default:
		return conf_copy(p, c->pin_where, sizeof(c->pin_where), k, v);
	}
}

/* [audit] key-file or key-credential: one of them; read in conf_finish. */
static int
conf_key(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;
	const char *s;

	if (c->key_line != 0)
		return conf_fail(p, "%s: a signing key is already given (%s, "
		    "line %d); give one of key-file, key-credential", key,
		    c->key_file[0] != '\0' ? "key-file" : "key-credential",
		    c->key_line);
	c->key_line = p->line;
	if (strcmp(key, "key-file") == 0)
		return conf_path(p, c->key_file, sizeof(c->key_file), key, v);
	for (s = v; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return conf_fail(p, "key-credential: \"%s\" is not a "
			    "credential name (letters, digits, '.', '_', '-')",
			    v);
	return conf_copy(p, c->key_credential, sizeof(c->key_credential),
	    key, v);
}

/*
 * [readers] map = READER -> slot-id N
 *         | map = READER -> description TEXT
 * for a reader whose PKCS#11 slot cannot be told by its name: a name over
 * 64 bytes is cut in slotDescription, and several may look alike.
 */
static int
conf_map(struct conf_parse *p, const char *v)
{
	struct conf *c = p->c;
	struct reader_map *m;
	const char *arrow = strstr(v, " -> "), *t;
	size_t n;
	char *end;
	int i;

	if (arrow == NULL)
		return conf_fail(p, "map: \"%s\": want READER -> slot-id N, "
		    "or READER -> description TEXT", v);
	if (c->n_maps == CONF_MAX_MAPS)
		return conf_fail(p, "map: at most %d", CONF_MAX_MAPS);
	m = &c->maps[c->n_maps];
	memset(m, 0, sizeof(*m));
	n = (size_t)(arrow - v);
	while (n > 0 && isspace((unsigned char)v[n - 1]))
		n--;
	if (n == 0 || n >= sizeof(m->reader))
		return conf_fail(p, "map: the reader name must have 1 to %zu "
		    "bytes", sizeof(m->reader) - 1);
	memcpy(m->reader, v, n);
	for (i = 0; i < c->n_maps; i++)
		if (strcmp(c->maps[i].reader, m->reader) == 0)
			return conf_fail(p, "map: reader \"%s\" is mapped "
			    "twice", m->reader);
	t = arrow + 4;
	t += strspn(t, " \t");
	if (strncmp(t, "slot-id ", 8) == 0) {
		errno = 0;
		m->slot = strtoul(t + 8, &end, 10);
		if (errno != 0 || end == t + 8 || *end != '\0' ||
		    !isdigit((unsigned char)t[8]))
			return conf_fail(p, "map: slot-id \"%s\": want a "
			    "number", t + 8);
		m->by_slot = 1;
	} else if (strncmp(t, "description ", 12) == 0) {
		t += 12;
		if (strlen(t) == 0 || strlen(t) > 64)
			return conf_fail(p, "map: a slot description has 1 to "
			    "64 bytes");
		snprintf(m->desc, sizeof(m->desc), "%s", t);
	} else
		return conf_fail(p, "map: \"%s\": want slot-id N or "
		    "description TEXT after ->", t);
	c->n_maps++;
	return 1;
}

/* A name of letters, digits, '.', '_', '-' (a station id, a user). */
static int
conf_name_ok(const char *v)
{
	const char *s;

	for (s = v; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return 0;
	return 1;
}

/* [station]: 1 when the key is known and good, 0 with the error set. */
static int
conf_station(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;

	if (strcmp(key, "id") == 0) {
		if (!conf_name_ok(v))
			return conf_fail(p, "id: \"%s\": use letters, digits, "
			    "'.', '_', '-'", v);
		return conf_copy(p, c->station, sizeof(c->station), key, v);
	}
	if (strcmp(key, "database") == 0)
		return conf_path(p, c->database, sizeof(c->database), key, v);
	if (strcmp(key, "timezone") == 0)
		return conf_timezone(p, v);
	if (strcmp(key, "control") == 0)
		return conf_path(p, c->control, sizeof(c->control), key, v);
	if (strcmp(key, "user") == 0) {
		if (!conf_name_ok(v))
			return conf_fail(p, "user: \"%s\" is not a user name",
			    v);
		return conf_copy(p, c->user, sizeof(c->user), key, v);
	}
	return conf_fail(p, "unknown key \"%s\" in [station]", key);
}

static int
conf_readers(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;

	if (strcmp(key, "include") == 0) {
		if (c->n_include == CONF_MAX_FILTERS)
			return conf_fail(p, "include: at most %d",
			    CONF_MAX_FILTERS);
		return conf_copy(p, c->include[c->n_include++], READER_MAX,
		    key, v);
	}
	if (strcmp(key, "exclude") == 0) {
		if (c->n_exclude == CONF_MAX_FILTERS)
			return conf_fail(p, "exclude: at most %d",
			    CONF_MAX_FILTERS);
		return conf_copy(p, c->exclude[c->n_exclude++], READER_MAX,
		    key, v);
	}
	if (strcmp(key, "map") == 0)
		return conf_map(p, v);
	return conf_fail(p, "unknown key \"%s\" in [readers]", key);
}

static int
conf_audit(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;

	if (strcmp(key, "key-file") == 0 || strcmp(key, "key-credential") == 0)
		return conf_key(p, key, v);
	/* 0: at shutdown only; below 10 s, the file would flood. */
	if (strcmp(key, "checkpoint-interval") == 0) {
		if (!conf_number(p, &c->checkpoint_interval, key, v, 0, 86400))
			return 0;
		if (c->checkpoint_interval > 0 && c->checkpoint_interval < 10)
			return conf_fail(p, "%s: \"%s\" is not 0 (at shutdown "
			    "only) nor in 10..86400", key, v);
		return 1;
	}
	if (strcmp(key, "checkpoint-file") == 0) {
		c->checkpoint_file_line = p->line;
		return conf_path(p, c->checkpoint_file,
		    sizeof(c->checkpoint_file), key, v);
	}
	return conf_fail(p, "unknown key \"%s\" in [audit]", key);
}

static int
conf_license(struct conf_parse *p, const char *key, const char *v)
{
	struct conf *c = p->c;
	size_t i;

	if (strcmp(key, "start-policy") == 0) {
		p->policy_line = p->line;
		p->seen_policy = 1;
		for (i = 0; i < 5; i++)
			if (strcmp(v, conf_policies[i]) == 0) {
				c->policy = (enum start_policy)i;
				return 1;
			}
		return conf_fail(p, "start-policy: \"%s\" is not one of today, "
		    "fixed, today-plus, next-month, later-of", v);
	}
	if (strcmp(key, "start-date") == 0)
		return conf_date(p, &c->start_date, key, v);
	if (strcmp(key, "start-offset-days") == 0)
		return conf_number(p, &c->start_offset, key, v, 0, 366);
	if (strcmp(key, "renew-within-days") == 0)
		return conf_number(p, &c->renew_days, key, v, 0, 3650);
	return conf_fail(p, "unknown key \"%s\" in [license]", key);
}

static int
conf_handler(void *arg, const char *section, const char *key,
    const char *v)
{
	static const char *const rules[] = { "batch-atr", "target-atr",
	    "ignore-atr", "batch-reader", "target-reader", "ignore-reader" };
	struct conf_parse *p = arg;
	size_t i;

	if (strcmp(section, "station") == 0)
		return conf_station(p, key, v);
	if (strcmp(section, "readers") == 0)
		return conf_readers(p, key, v);
	if (strcmp(section, "audit") == 0)
		return conf_audit(p, key, v);
	if (strcmp(section, "license") == 0)
		return conf_license(p, key, v);
	if (strcmp(section, "pkcs11") == 0) {
		if (strcmp(key, "module") == 0)
			return conf_path(p, p->c->module, sizeof(p->c->module),
			    key, v);
		for (i = PIN_CONF; i <= PIN_KEYRING; i++)
			if (strcmp(key, conf_pin_keys[i]) == 0)
				return conf_pin(p, (enum pin_source)i, v);
	} else if (strcmp(section, "classify") == 0) {
		for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
			if (strcmp(key, rules[i]) == 0)
				return conf_rule(p, key, v);
	} else {
		p->line = p->section_line;
		return conf_fail(p, "unknown section [%s]", section);
	}
	return conf_fail(p, "unknown key \"%s\" in [%s]", key, section);
}

static char *
conf_trim(char *s)
{
	char *e;

	s += strspn(s, " \t\r\f\v");
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\f\v", e[-1]) != NULL)
		*--e = '\0';
	return s;
}

/*
 * [name]: a known section, given once.  An unclosed "[license" is said
 * to be one here, not taken for a key of the section before.
 */
static int
conf_section_line(struct conf_parse *p, char *s)
{
	char *e = strchr(s, ']'), *name, *rest;
	size_t i;

	if (e == NULL)
		return conf_fail(p, "\"%.*s\": a section header without its "
		    "closing ']'", (int)strcspn(s, " \t=;#"), s);
	*e = '\0';
	name = conf_trim(s + 1);
	rest = conf_trim(e + 1);
	if (*rest != '\0' && *rest != '#' && *rest != ';')
		return conf_fail(p, "text after [%s]; put one section header "
		    "alone on its line", name);
	for (i = 0; i < sizeof(conf_sections) / sizeof(conf_sections[0]); i++)
		if (strcmp(name, conf_sections[i]) == 0)
			break;
	if (i == sizeof(conf_sections) / sizeof(conf_sections[0]))
		return conf_fail(p, "unknown section [%s]", name);
	if (p->section_lines[i] != 0)
		return conf_fail(p, "[%s] is given twice (first at line %d); "
		    "merge the two into one", name, p->section_lines[i]);
	p->section_lines[i] = p->line;
	p->section_line = p->line;
	p->section = (int)i;
	return 1;
}

/*
 * A key given twice where one value is kept would silently win last: an
 * error, naming both lines.  [readers] and [classify] are lists.
 */
static int
conf_seen_key(struct conf_parse *p, const char *key)
{
	const char *sec = conf_sections[p->section];
	int i;

	if (strcmp(sec, "readers") == 0 || strcmp(sec, "classify") == 0)
		return 1;
	for (i = 0; i < p->n_seen; i++)
		if (p->seen[i].section == p->section &&
		    strcmp(p->seen[i].key, key) == 0)
			return conf_fail(p, "%s: given twice in [%s] (first at "
			    "line %d); keep one", key, sec, p->seen[i].line);
	if (p->n_seen < CONF_MAX_SEEN && strlen(key) < sizeof(p->seen[0].key)) {
		p->seen[p->n_seen].section = p->section;
		snprintf(p->seen[p->n_seen].key, sizeof(p->seen[0].key), "%s",
		    key);
		p->seen[p->n_seen++].line = p->line;
	}
	return 1;
}

/*
 * One line: blank, a comment (# or ; first), [section] or key = value.
 * A ';' after a blank starts a comment, as in inih, which read these
 * files before.  Leading blanks are ignored (inih took an indented line
 * for the continuation of the value above).
 */
static void
conf_line(struct conf_parse *p, char *s)
{
	char *eq, *key, *v, *e;

	s = conf_trim(s);
	if (*s == '\0' || *s == '#' || *s == ';')
		return;
	if (*s == '[') {
		conf_section_line(p, s);
		return;
	}
	if ((eq = strchr(s, '=')) == NULL || eq == s) {
		conf_fail(p, "not a valid line (want key = value, [section] "
		    "or a # comment)");
		return;
	}
	*eq = '\0';
	key = conf_trim(s);
	v = eq + 1;
	for (e = v; *e != '\0'; e++)
		if (*e == ';' && e > v && (e[-1] == ' ' || e[-1] == '\t')) {
			*e = '\0';
			break;
		}
	v = conf_trim(v);
	if (p->section < 0) {
		conf_fail(p, "%s: before any [section]", key);
		return;
	}
	if (!conf_handler(p, conf_sections[p->section], key, v) ||
	    p->err_line != 0 || !conf_seen_key(p, key))
		return;
	if (p->section == 0 && strcmp(key, "database") == 0)
		p->c->database_line = p->line;
	else if (p->section == 0 && strcmp(key, "id") == 0)
		p->c->station_line = p->line;
	else if (p->section == 1 && strcmp(key, "module") == 0)
		p->c->module_line = p->line;
	else if (p->section == 4 && strcmp(key, "start-date") == 0)
		p->date_line = p->line;
	else if (p->section == 4 && strcmp(key, "start-offset-days") == 0)
		p->offset_line = p->line;
}

/*
 * The text, parsed in place; buf holds len + 1 bytes.  No line length
 * limit but the file's own: a long database path or comment is fine.
 */
static void
conf_parse_text(struct conf_parse *p, char *buf, size_t len)
{
	char *s = buf, *end = buf + len, *nl;

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	for (; s < end && p->err_line == 0; s = nl + 1) {
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		p->line++;
		if (memchr(s, '\0', (size_t)(nl - s)) != NULL) {
			conf_fail(p, "a NUL byte in this line; the file must "
			    "be text");
			return;
		}
		*nl = '\0';
		conf_line(p, s);
	}
}

/*
 * The file's text may hold the PIN (pin =): it lives in locked memory,
 * out of core dumps, read with read(2) (no stdio buffer), and is wiped.
 */
static char *
conf_text_alloc(void)
{
	void *b;

	b = mmap(NULL, CONF_FILE_MAX + 1, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return NULL;
	(void)mlock(b, CONF_FILE_MAX + 1);
	(void)madvise(b, CONF_FILE_MAX + 1, MADV_DONTDUMP);
	return b;
}

static void
conf_text_free(char *b)
{
	explicit_bzero(b, CONF_FILE_MAX + 1);
	munlock(b, CONF_FILE_MAX + 1);
	munmap(b, CONF_FILE_MAX + 1);
}

static int
conf_read(struct conf_parse *p, const char *path, char *buf, size_t *len,
    char *err, size_t errlen)
{
	size_t k = 0;
	ssize_t n;
	int fd;

	if ((fd = pin_open_file(path, CONF_FILE_MAX, &p->st, err, errlen)) < 0)
		return -1;
	while (k <= CONF_FILE_MAX &&
	    (n = read(fd, buf + k, CONF_FILE_MAX + 1 - k)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		k += (size_t)n;
	}
	close(fd);
	if (k > CONF_FILE_MAX) {
		snprintf(err, errlen, "%s: refused: more than the %d bytes "
		    "allowed", path, CONF_FILE_MAX);
		return -1;
	}
	buf[k] = '\0';
	*len = k;
	return 0;
}

/*
 * Who the daemon runs as, for the PIN files' owner and group: itself
 * once it is not root; as root, the [station] user that it will become
 * (or only root when that user does not exist).
 */
static void
conf_service_ids(const struct conf *c, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	if (geteuid() != 0) {
		*uid = geteuid();
		*gid = getegid();
	} else if ((pw = getpwnam(c->user)) != NULL) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	} else {
		*uid = 0;
		*gid = 0;
	}
}

static struct conf *
conf_new(void)
{
	struct conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if (pin_alloc(&c->pin) != 0) {
		free(c);
		return NULL;
	}
	if (gethostname(c->station, sizeof(c->station) - 1) != 0 ||
	    c->station[0] == '\0')
		snprintf(c->station, sizeof(c->station), "station");
	c->station[strcspn(c->station, ".")] = '\0';
	snprintf(c->database, sizeof(c->database),
	    "/var/lib/cardlicd/audit.db");
	snprintf(c->timezone, sizeof(c->timezone), "local");
	snprintf(c->user, sizeof(c->user), "cardlicd");
	snprintf(c->control, sizeof(c->control), "/run/cardlicd/control");
	c->policy = START_TODAY;
	c->start_date = -1;
	c->renew_days = 0;
	c->checkpoint_interval = 300;
	c->refs = 1;
	c->generation = ++conf_generation;
	return c;
}

/* The PIN from its source; errors name the key's line. */
static int
conf_fetch_pin(struct conf_parse *p, char *err, size_t errlen)
{
	struct conf *c = p->c;
	char msg[600];
	uid_t uid;
	gid_t gid;
	int rc = 0;

	conf_service_ids(c, &uid, &gid);
	switch (c->pin_source) {
	case PIN_CONF:
		rc = pin_check_stat(&p->st, uid, gid, "holds the PIN", msg,
		    sizeof(msg));
		break;
	case PIN_FILE:
		rc = pin_read_file(c->pin_where, uid, gid, c->pin, &c->pin_len,
		    msg, sizeof(msg));
		break;
	case PIN_CREDENTIAL:
		if (p->flags & CONF_CHECK_ONLY)
			break;
		rc = pin_read_credential(c->pin_where, c->pin, &c->pin_len,
		    msg, sizeof(msg));
		break;
	case PIN_KEYRING:
		if (p->flags & CONF_CHECK_ONLY)
			break;
		rc = pin_read_keyring(c->pin_where, c->pin, &c->pin_len, msg,
		    sizeof(msg));
		break;
	default:
		break;
	}
	if (rc != 0) {
		snprintf(err, errlen, "%s:%d: %s", c->path, p->pin_line, msg);
		return -1;
	}
	c->pin_line = p->pin_line;
	return 0;
}

/*
 * KEY.endorsement, when there is one: the previous key's signature over
 * the new one (cardlicctl keygen --rotate), 128 hex digits on one line.
 * It is public; a missing file means no rotation.  0, or -1 with msg.
 */
static int
conf_read_endorsement(const char *key, char *out, char *msg, size_t len)
{
	char path[PATH_MAX], buf[256];
	size_t n;
	FILE *f;

	out[0] = '\0';
	if ((size_t)snprintf(path, sizeof(path), "%s.endorsement", key) >=
	    sizeof(path))
		return 0;
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(msg, len, "%s: cannot open: %s", path,
		    strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) != 128 || strspn(buf, "0123456789abcdef") != 128) {
		snprintf(msg, len, "%s: not an endorsement (128 lower-case hex "
		    "digits on one line, as cardlicctl keygen --rotate writes "
		    "it)", path);
		return -1;
	}
	memcpy(out, buf, 129);
	return 0;
}

/*
 * The signing key, from a file that only its owner (root or the daemon's
 * user) may read, 0600, never through a link; or from a systemd
 * credential, whose directory systemd keeps for this service alone.  The
 * PEM text goes through a locked page that is wiped.
 */
static struct sign_key *
conf_read_key(const char *path, int check, uid_t uid, char *msg, size_t len)
{
	struct sign_key *k = NULL;
	struct stat st;
	char *buf, why[300];
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = pin_open_file(path, CONF_KEY_MAX, &st, msg, len)) < 0)
		return NULL;
	if (check && (st.st_mode & 077) != 0) {
		snprintf(msg, len, "%s: this file holds the station's signing "
		    "key but others or its group may read it (mode %04o); "
		    "run chmod 0600 on it", path,
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return NULL;
	}
	if (check && st.st_uid != 0 && st.st_uid != uid) {
		snprintf(msg, len, "%s: this file holds the station's signing "
		    "key but belongs to uid %u, neither root nor the daemon's "
		    "user (uid %u)", path, (unsigned)st.st_uid,
		    (unsigned)uid);
		close(fd);
		return NULL;
	}
	if (pin_alloc(&buf) != 0) {
		snprintf(msg, len, "%s: out of memory", path);
		close(fd);
		return NULL;
	}
	while (n <= CONF_KEY_MAX &&
	    (r = read(fd, buf + n, CONF_KEY_MAX + 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(msg, len, "%s: cannot read: %s", path,
			    strerror(errno));
			goto out;
		}
		n += (size_t)r;
	}
	if (n > CONF_KEY_MAX)
		snprintf(msg, len, "%s: refused: more than %d bytes", path,
		    CONF_KEY_MAX);
	else if ((k = sign_key_from_pem(buf, n, why, sizeof(why))) == NULL)
		snprintf(msg, len, "%s: %s; make one with cardlicctl keygen",
		    path, why);
out:
	close(fd);
	pin_free(buf);
	return k;
}

/* The signing key, when [audit] names one; errors name the key's line. */
static int
conf_fetch_key(struct conf_parse *p, char *err, size_t errlen)
{
	struct conf *c = p->c;
	const char *dir;
	char msg[PATH_MAX + 512], path[PATH_MAX];
	uid_t uid;
	gid_t gid;
	int check = 1;

	if (c->key_line == 0 || (p->flags & CONF_NO_SIGN_KEY))
		return 0;
	/*
	 * -n as the service's user (the unit's ExecReload=): a reload
	 * never reads the key, and a root-only file is out of its reach.
	 */
	if ((p->flags & CONF_CHECK_ONLY) && geteuid() != 0)
		return 0;
	if (c->key_file[0] != '\0')
		snprintf(path, sizeof(path), "%s", c->key_file);
	else {
		if (p->flags & CONF_CHECK_ONLY)
			return 0;
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || dir[0] == '\0') {
			snprintf(err, errlen, "%s:%d: key-credential %s: "
			    "CREDENTIALS_DIRECTORY is not set; give the "
			    "credential with LoadCredential= or "
			    "LoadCredentialEncrypted= in the unit", c->path,
			    c->key_line, c->key_credential);
			return -1;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, c->key_credential);
		check = 0;
	}
	conf_service_ids(c, &uid, &gid);
	if ((c->key = conf_read_key(path, check, uid, msg, sizeof(msg))) ==
	    NULL || conf_read_endorsement(path, c->key_endorsement, msg,
	    sizeof(msg)) != 0) {
		snprintf(err, errlen, "%s:%d: %s", c->path, c->key_line, msg);
		return -1;
	}
	return 0;
}

/* "file:line", or "file" for a key left at its default. */
const char *
conf_at(const struct conf *c, int line, char *buf, size_t len)
{
	if (line > 0)
		snprintf(buf, len, "%s:%d", c->path, line);
	else
		snprintf(buf, len, "%s", c->path);
	return buf;
}

/* Keys that the chosen start policy does not read, in line order. */
static void
conf_policy_warnings(struct conf_parse *p)
{
	struct conf *c = p->c;
	const char *pol = conf_policies[c->policy];
	char at[64] = " (the default)";
	int off, date;

	if (p->seen_policy)
		snprintf(at, sizeof(at), " (line %d)", p->policy_line);
	off = p->offset_line != 0 && c->policy != START_TODAY_PLUS;
	date = p->date_line != 0 && c->policy != START_FIXED &&
	    c->policy != START_LATER_OF;
	if (date && (!off || p->date_line < p->offset_line)) {
		conf_warn(p, p->date_line, "start-date is ignored: "
		    "start-policy is %s%s, not fixed or later-of", pol, at);
		date = 0;
	}
	if (off)
		conf_warn(p, p->offset_line, "start-offset-days is ignored: "
		    "start-policy is %s%s, not today-plus", pol, at);
	if (date)
		conf_warn(p, p->date_line, "start-date is ignored: "
		    "start-policy is %s%s, not fixed or later-of", pol, at);
}

/*
 * A checkpoint file in the database's directory would share its fate: one
 * who may cut the database's rows (or restore an old copy of the
 * directory) would cut the checkpoints too.  Compared by name, then, where
 * both directories exist, by what they resolve to (a symlink, "..").
 */
/* Is sub the directory dir, or one under it? */
static int
conf_dir_holds(const char *dir, const char *sub)
{
	size_t n = strlen(dir);

	return strcmp(dir, sub) == 0 || (strncmp(sub, dir, n) == 0 &&
	    (sub[n] == '/' || dir[n - 1] == '/'));
}

static int
conf_checkpoint_place(const struct conf *c, char *err, size_t errlen)
{
	char dd[4096], fd[4096], rd[PATH_MAX], rf[PATH_MAX];
	char *s;
	int in;

	if (c->checkpoint_file[0] == '\0')
		return 0;
	snprintf(dd, sizeof(dd), "%s", c->database);
	snprintf(fd, sizeof(fd), "%s", c->checkpoint_file);
	if ((s = strrchr(dd, '/')) != NULL)
		s[s == dd ? 1 : 0] = '\0';
	if ((s = strrchr(fd, '/')) != NULL)
		s[s == fd ? 1 : 0] = '\0';
	in = conf_dir_holds(dd, fd) || (realpath(dd, rd) != NULL &&
	    realpath(fd, rf) != NULL && conf_dir_holds(rd, rf));
	if (in) {
		snprintf(err, errlen, "%s:%d: checkpoint-file %s is in the "
		    "database's directory %s: put it where one who can "
		    "change the database cannot (another file system, a "
		    "write-once path)", c->path, c->checkpoint_file_line,
		    c->checkpoint_file, dd);
		return -1;
	}
	return 0;
}

/*
 * Checks that need the whole file: the start policy's own keys, exactly
 * one PIN source, the module.  Errors point at the key that needs the
 * missing one.
 */
static int
conf_finish(struct conf_parse *p, char *err, size_t errlen)
{
	struct conf *c = p->c;
	const char *pol = conf_policies[c->policy];

	char at[4200];

	/* At the [pkcs11] line when there is one. */
	conf_at(c, p->section_lines[1], at, sizeof(at));
	if (c->module[0] == '\0') {
		snprintf(err, errlen, "%s: [pkcs11] module is required", at);
		return -1;
	}
	if (c->pin_source == PIN_NONE) {
		snprintf(err, errlen, "%s: [pkcs11] needs a PIN source: pin, "
		    "pin-file, pin-credential or pin-keyring", at);
		return -1;
	}
	if ((c->policy == START_FIXED || c->policy == START_LATER_OF) &&
	    c->start_date < 0) {
		snprintf(err, errlen, "%s:%d: start-policy %s needs "
		    "start-date", c->path, p->policy_line, pol);
		return -1;
	}
	if (c->policy == START_TODAY_PLUS && c->start_offset == 0 &&
	    p->seen_policy) {
		snprintf(err, errlen, "%s:%d: start-policy today-plus needs "
		    "start-offset-days (1..366)", c->path, p->policy_line);
		return -1;
	}
	if (conf_checkpoint_place(c, err, errlen) != 0)
		return -1;
	conf_policy_warnings(p);
	if (conf_fetch_key(p, err, errlen) != 0)
		return -1;
	return conf_fetch_pin(p, err, errlen);
}

/*
 * Load a configuration.  NULL with err set ("file:line: message") on any
 * mistake; the caller exits with status 2 at start-up, or keeps the old
 * configuration on reload.
 */
struct conf *
conf_load(const char *path, int flags, char *err, size_t errlen)
{
	struct conf_parse p;
	char *text;
	size_t len;
	int i;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	p.section = -1;
	if ((p.c = conf_new()) == NULL || (text = conf_text_alloc()) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		conf_unref(p.c);
		return NULL;
	}
	snprintf(p.c->path, sizeof(p.c->path), "%s", path);
	if (conf_read(&p, path, text, &len, err, errlen) == 0)
		conf_parse_text(&p, text, len);
	else
		p.err_line = -1;
	conf_text_free(text);
	if (p.err_line != 0) {
		if (p.err_line > 0)
			snprintf(err, errlen, "%s:%d: %s", path, p.err_line,
			    p.err);
		conf_unref(p.c);
		return NULL;
	}
	if (conf_finish(&p, err, errlen) != 0) {
		conf_unref(p.c);
		return NULL;
	}
	for (i = 0; i < p.n_warn; i++)
		fprintf(stderr, "cardlicd: %s:%d: warning: %s\n", path,
		    p.warn_line[i], p.warn[i]);
	return p.c;
}

struct conf *
conf_ref(struct conf *c)
{
	pthread_mutex_lock(&conf_lock);
	c->refs++;
	pthread_mutex_unlock(&conf_lock);
	return c;
}

void
conf_unref(struct conf *c)
{
	int last;

	if (c == NULL)
		return;
	pthread_mutex_lock(&conf_lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&conf_lock);
	if (!last)
		return;
	pin_free(c->pin);
	sign_key_free(c->key);
	free(c);
}

long
conf_start_date(const struct conf *c, long today)
{
	switch (c->policy) {
	case START_FIXED:
		return c->start_date;
	case START_TODAY_PLUS:
		return today + c->start_offset;
	case START_NEXT_MONTH:
		return date_first_of_next_month(today);
	case START_LATER_OF:
		return c->start_date > today ? c->start_date : today;
	case START_TODAY:
	default:
		return today;
	}
}

/* [audit], only when it names a key: the public half may be shown. */
static void
conf_print_key(const struct conf *c, FILE *f)
{
	uint8_t pub[32];
	char hex[65];

	if (c->key_line == 0)
		return;
	fprintf(f, "\n[audit]\n");
	if (c->key_file[0] != '\0')
		fprintf(f, "key-file = %s", c->key_file);
	else
		fprintf(f, "key-credential = %s", c->key_credential);
	if (c->key != NULL) {
		sign_key_public(c->key, pub);
		dbhash_hex(pub, 32, 0, hex);
		fprintf(f, " (Ed25519 key read, public key %s%s)\n", hex,
		    c->key_endorsement[0] != '\0' ? ", endorsed by the "
		    "previous key" : "");
	} else
		fprintf(f, " (read when the daemon starts)\n");
}

/* The checkpoints' keys, in [audit] (shown only when it is). */
static void
conf_print_checkpoint(const struct conf *c, FILE *f)
{
	if (c->key_line == 0 && c->checkpoint_file[0] == '\0' &&
	    c->checkpoint_interval == 300)
		return;
	if (c->key_line == 0)
		fprintf(f, "\n[audit]\n# no key-file nor key-credential: no "
		    "checkpoints are written\n");
	fprintf(f, "checkpoint-interval = %ld%s\n", c->checkpoint_interval,
	    c->checkpoint_interval == 0 ? " (at shutdown only)" : "");
	if (c->checkpoint_file[0] != '\0')
		fprintf(f, "checkpoint-file = %s\n", c->checkpoint_file);
}

/* cardlicd -n: the configuration as the daemon understood it. */
void
conf_print(const struct conf *c, FILE *f)
{
	char d[DATE_LEN + 1], s[DATE_LEN + 1];
	long today = date_today(NULL);
	int i;

	fprintf(f, "# %s, as cardlicd reads it\n", c->path);
	fprintf(f, "[station]\nid = %s\ndatabase = %s\ntimezone = %s\n",
	    c->station, c->database, c->timezone);
	fprintf(f, "user = %s\ncontrol = %s\n", c->user, c->control);
	fprintf(f, "\n[pkcs11]\nmodule = %s\n", c->module);
	if (c->pin_source == PIN_CONF)
		fprintf(f, "pin = ******** (%zu characters, masked)\n",
		    c->pin_len);
	else if (c->pin_len > 0)
		fprintf(f, "%s = %s (PIN read: %zu characters, masked)\n",
		    conf_pin_keys[c->pin_source], c->pin_where, c->pin_len);
	else
		fprintf(f, "%s = %s (read when the daemon starts)\n",
		    conf_pin_keys[c->pin_source], c->pin_where);
	fprintf(f, "\n[readers]\n");
	for (i = 0; i < c->n_include; i++)
		fprintf(f, "include = %s\n", c->include[i]);
	for (i = 0; i < c->n_exclude; i++)
		fprintf(f, "exclude = %s\n", c->exclude[i]);
	if (c->n_include == 0)
		fprintf(f, "# every reader\n");
	fprintf(f, "\n[classify]\n");
	for (i = 0; i < c->n_rules; i++)
		classify_print_rule(f, &c->rules[i]);
	if (c->n_rules == 0)
		fprintf(f, "# no rules: every card is probed\n");
	fprintf(f, "\n[license]\nstart-policy = %s\n",
	    conf_policies[c->policy]);
	if (c->start_date >= 0) {
		date_format(c->start_date, d);
		fprintf(f, "start-date = %s\n", d);
	}
	if (c->policy == START_TODAY_PLUS)
		fprintf(f, "start-offset-days = %ld\n", c->start_offset);
	fprintf(f, "renew-within-days = %ld\n", c->renew_days);
	date_format(today, d);
	date_format(conf_start_date(c, today), s);
	fprintf(f, "# a card issued today (%s) gets a license starting %s\n",
	    d, s);
	conf_print_key(c, f);
	conf_print_checkpoint(c, f);
}

/* Text from a module or card, made printable (invariant 9). */
static void
conf_print_field(FILE *out, const unsigned char *s, size_t n)
{
	size_t i;

	for (i = 0, n = dbhash_trimmed(s, n); i < n; i++)
		fputc(s[i] >= 0x20 && s[i] < 0x7F ? s[i] : '?', out);
}

/* One slot, for -n: its description, and its token if there is one. */
static void
conf_print_slot(CK_FUNCTION_LIST *m, CK_SLOT_ID id, FILE *out)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;

	fprintf(out, "# slot %lu: ", (unsigned long)id);
	if (m->C_GetSlotInfo(id, &si) != CKR_OK) {
		fprintf(out, "(no slot info)\n");
		return;
	}
	fputc('"', out);
	conf_print_field(out, si.slotDescription, sizeof(si.slotDescription));
	fputc('"', out);
	if ((si.flags & CKF_TOKEN_PRESENT) &&
	    m->C_GetTokenInfo(id, &ti) == CKR_OK) {
		fprintf(out, ", token ");
		conf_print_field(out, ti.model, sizeof(ti.model));
		fputc(' ', out);
		conf_print_field(out, ti.serialNumber, sizeof(ti.serialNumber));
	} else
		fprintf(out, ", no token");
	fputc('\n', out);
}

/*
 * cardlicd -n: load the module as the daemon does (through p11-kit,
 * unmanaged) and list its slots, so that a wrong path, a library that is
 * not PKCS#11 or a module that cannot initialize is caught here, at the
 * module key's line, and not at the first card.
 */
int
conf_check_module(const struct conf *c, FILE *out, char *err, size_t errlen)
{
	CK_FUNCTION_LIST *m;
	CK_C_INITIALIZE_ARGS args;
	CK_SLOT_ID ids[64];
	CK_INFO info;
	CK_ULONG n = 64, i;
	CK_RV rv;
	char at[4200];
	const char *why;

	conf_at(c, c->module_line, at, sizeof(at));
	if (access(c->module, R_OK) != 0) {
		snprintf(err, errlen, "%s: module %s: %s", at, c->module,
		    strerror(errno));
		return -1;
	}
	if ((m = p11_kit_module_load(c->module,
	    P11_KIT_MODULE_UNMANAGED)) == NULL) {
		why = p11_kit_message();
		snprintf(err, errlen, "%s: module %s: cannot be loaded as a "
		    "PKCS#11 module: %s", at, c->module, why != NULL ? why :
		    "unknown error");
		return -1;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = m->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, errlen, "%s: module %s: C_Initialize failed: %s",
		    at, c->module, p11_rv_name(rv));
		p11_kit_module_release(m);
		return -1;
	}
	fprintf(out, "\n# module %s: ", c->module);
	if (m->C_GetInfo(&info) == CKR_OK) {
		conf_print_field(out, info.libraryDescription,
		    sizeof(info.libraryDescription));
		fprintf(out, " (");
		conf_print_field(out, info.manufacturerID,
		    sizeof(info.manufacturerID));
		fprintf(out, "), Cryptoki %u.%u\n",
		    (unsigned)info.cryptokiVersion.major,
		    (unsigned)info.cryptokiVersion.minor);
	} else
		fprintf(out, "no C_GetInfo\n");
	if ((rv = m->C_GetSlotList(CK_FALSE, ids, &n)) != CKR_OK) {
		snprintf(err, errlen, "%s: module %s: C_GetSlotList failed: %s",
		    at, c->module, p11_rv_name(rv));
		m->C_Finalize(NULL);
		p11_kit_module_release(m);
		return -1;
	}
	fprintf(out, "# %lu slot%s now\n", (unsigned long)n, n == 1 ? "" :
	    "s");
	for (i = 0; i < n; i++)
		conf_print_slot(m, ids[i], out);
	m->C_Finalize(NULL);
	p11_kit_module_release(m);
	return 0;
}

/*
 * access(2) for each path as the service user, in a child that becomes
 * that user: the kernel's answer, with groups, directories on the way
 * and ACLs, not a guess from mode bits.  errs[i] is 0 or an errno.
 */
static int
conf_access_as(const struct passwd *pw, const char *const paths[],
    const int modes[], int n, int errs[])
{
	ssize_t r;
	pid_t pid;
	int fd[2], i, st;

	if (pipe2(fd, O_CLOEXEC) != 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(fd[0]);
		close(fd[1]);
		return -1;
	}
	if (pid == 0) {
		close(fd[0]);
		if (initgroups(pw->pw_name, pw->pw_gid) != 0 ||
		    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
			_exit(1);
		for (i = 0; i < n; i++)
			errs[i] = access(paths[i], modes[i]) == 0 ? 0 : errno;
		r = write(fd[1], errs, (size_t)n * sizeof(int));
		_exit(r == (ssize_t)((size_t)n * sizeof(int)) ? 0 : 1);
	}
	close(fd[1]);
	do
		r = read(fd[0], errs, (size_t)n * sizeof(int));
	while (r < 0 && errno == EINTR);
	close(fd[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return r == (ssize_t)((size_t)n * sizeof(int)) ? 0 : -1;
}

/* "root:root 0600", for messages about a file the user cannot use. */
static void
conf_owner(const char *path, char *buf, size_t len)
{
	struct stat st;
	struct passwd *pw;
	struct group *gr;
	char u[32], g[32];

	if (stat(path, &st) != 0) {
		snprintf(buf, len, "%s", strerror(errno));
		return;
	}
	if ((pw = getpwuid(st.st_uid)) != NULL)
		snprintf(u, sizeof(u), "%s", pw->pw_name);
	else
		snprintf(u, sizeof(u), "%u", (unsigned)st.st_uid);
	if ((gr = getgrgid(st.st_gid)) != NULL)
		snprintf(g, sizeof(g), "%s", gr->gr_name);
	else
		snprintf(g, sizeof(g), "%u", (unsigned)st.st_gid);
	snprintf(buf, len, "%s:%s %04o", u, g,
	    (unsigned)(st.st_mode & 07777));
}

/*
 * What the service user cannot do with path (what: the key that names
 * it, NULL for the file itself), and the command that mends it.  1 when
 * that makes the setup wrong, 0 for a warning.
 */
static int
conf_unit_says(const struct conf *c, const char *path, const char *what,
    int line, int mode, int err, const char *grp)
{
	char at[4200], own[128];

	conf_owner(path, own, sizeof(own));
	conf_at(c, line, at, sizeof(at));
	if (what == NULL)
		fprintf(stderr, "cardlicd: %s: the service user %s cannot read "
		    "this file (%s: %s); run: chown root:%s %s && chmod 0640 "
		    "%s\n", c->path, c->user, own, strerror(err), grp,
		    c->path, c->path);
	else if (mode == R_OK)
		fprintf(stderr, "cardlicd: %s: %s %s: the service user %s "
		    "cannot read it (%s: %s); run: chown root:%s %s && chmod "
		    "0640 %s\n", at, what, path, c->user, own, strerror(err),
		    grp, path, path);
	else {
		/* StateDirectory= hands it to the user at start. */
		fprintf(stderr, "cardlicd: %s: warning: %s %s: the service "
		    "user %s cannot write its directory %s (%s: %s); the "
		    "unit's StateDirectory= gives " CONF_STATE_DIR " to it at "
		    "start; outside the unit, run: chown %s:%s %s && chmod "
		    "0750 %s\n", at, what, c->database, c->user, path, own,
		    strerror(err), c->user, grp, path, path);
		return 0;
	}
	return 1;
}

/*
 * cardlicd -n run as root, for the unit: the service runs as [station]
 * user, under ProtectSystem=strict with StateDirectory=cardlicd.  Every
 * problem is printed; the count is returned.  -n --allow-root skips this
 * (a daemon that stays root, outside the unit: the tests, the demo).
 */
int
conf_check_unit(const struct conf *c)
{
	struct passwd *pw;
	struct group *gr;
	const char *paths[4], *what[4];
	char at[4200], grp[32], dir[4096], *slash;
	int modes[4], errs[4], lines[4], n = 0, bad = 0, outside, i;

	if ((pw = getpwnam(c->user)) == NULL) {
		fprintf(stderr, "cardlicd: %s: [station] user \"%s\" does not "
		    "exist: create it (systemd-sysusers), or check a daemon "
		    "that stays root with -n --allow-root\n", c->path,
		    c->user);
		return 1;
	}
	if ((gr = getgrgid(pw->pw_gid)) != NULL)
		snprintf(grp, sizeof(grp), "%s", gr->gr_name);
	else
		snprintf(grp, sizeof(grp), "%u", (unsigned)pw->pw_gid);
	outside = strncmp(c->database, CONF_STATE_DIR "/",
	    sizeof(CONF_STATE_DIR)) != 0 || strstr(c->database, "/..") != NULL;
	if (outside) {
		fprintf(stderr, "cardlicd: %s: database %s: outside "
		    CONF_STATE_DIR ", the unit's StateDirectory; "
		    "ProtectSystem=strict makes every other path read-only "
		    "to the daemon: put the database under " CONF_STATE_DIR
		    "/\n", conf_at(c, c->database_line, at, sizeof(at)),
		    c->database);
		bad++;
	}
	paths[n] = c->path;
	what[n] = NULL;
	lines[n] = 0;
	modes[n++] = R_OK;
	if (c->pin_source == PIN_FILE) {
		paths[n] = c->pin_where;
		what[n] = "pin-file";
		lines[n] = c->pin_line;
		modes[n++] = R_OK;
	}
	snprintf(dir, sizeof(dir), "%s", c->database);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (!outside && access(dir, F_OK) == 0) {
		paths[n] = dir;
		what[n] = "database";
		lines[n] = c->database_line;
		modes[n++] = W_OK | X_OK;
	}
	if (conf_access_as(pw, paths, modes, n, errs) != 0) {
		fprintf(stderr, "cardlicd: %s: cannot check what user %s may "
		    "read: %s\n", c->path, c->user, strerror(errno));
		return bad + 1;
	}
	for (i = 0; i < n; i++)
		if (errs[i] != 0)
			bad += conf_unit_says(c, paths[i], what[i], lines[i],
			    modes[i], errs[i], grp);
	return bad;
}
