/*
 * The station's signing key (issue 11): keygen makes one (the private
 * half 0600 for cardlicd, the public half for auditors), keygen --rotate
 * makes the next one with the previous key's endorsement, and pubkey
 * prints the key that the database publishes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicctl.h"
#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

/* A new file with text, never over an existing one. */
static int
keys_write(const char *path, const char *text, mode_t mode)
{
	size_t n = strlen(text), k = 0;
	ssize_t r;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd < 0)
		return ctl_fail("%s: %s%s", path, strerror(errno),
		    errno == EEXIST ? " (keygen never overwrites a key)" : "");
	while (k < n) {
		if ((r = write(fd, text + k, n - k)) < 0) {
			if (errno == EINTR)
				continue;
			ctl_fail("%s: %s", path, strerror(errno));
			close(fd);
			unlink(path);
			return CTL_USAGE;
		}
		k += (size_t)r;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		ctl_fail("%s: %s", path, strerror(errno));
		unlink(path);
		return CTL_USAGE;
	}
	return CTL_OK;
}

/* A private key file: PEM, at most a page. */
static struct sign_key *
keys_read(const char *path)
{
	struct sign_key *k;
	char buf[4097], err[256];
	size_t n;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		ctl_fail("%s: %s", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if ((k = sign_key_from_pem(buf, n, err, sizeof(err))) == NULL)
		ctl_fail("%s: %s", path, err);
	explicit_bzero(buf, sizeof(buf));
	return k;
}

static const char *const keygen_help =
"usage: cardlicctl keygen PRIV PUB\n"
"       cardlicctl keygen --rotate [--station ID] OLDPRIV NEWPRIV NEWPUB\n"
"Makes an Ed25519 key for cardlicd to sign the audit rows with: PRIV\n"
"(PEM, mode 0600) for [audit] key-file or key-credential, PUB (PEM) for\n"
"the auditors' cardlicctl verify --key.  Never overwrites a file.\n"
"--rotate makes the next key and NEWPRIV.endorsement: OLDPRIV's\n"
"signature over the station's id and the new public key, which cardlicd\n"
"puts in the key row that publishes the new key, so that verify --key\n"
"with the old public key accepts the new one.  The station's id is the\n"
"configuration's [station] id unless --station gives it.\n";

int
cmd_keygen(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rotate", no_argument, NULL, 'r' },
		{ "station", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sign_key *old = NULL, *k = NULL;
	const char *station = c->station, *priv, *pub;
	char pem[1024], pubpem[512], err[256], path[4200], hex[129];
	char host[64];
	uint8_t p[32], e[64];
	int ch, rotate = 0, rc = CTL_USAGE;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': rotate = 1; break;
		case 's': station = optarg; break;
		case 'h': fputs(keygen_help, stdout); return CTL_OK;
		default: return ctl_usage(keygen_help);
		}
	}
	if (argc - optind != (rotate ? 3 : 2))
		return ctl_usage(keygen_help);
	if (rotate && (old = keys_read(argv[optind++])) == NULL)
		return CTL_USAGE;
	priv = argv[optind];
	pub = argv[optind + 1];
	if (rotate && station == NULL) {
		/* The daemon's own default: the host name, to its first dot. */
		if (gethostname(host, sizeof(host) - 1) != 0 ||
		    host[0] == '\0')
			snprintf(host, sizeof(host), "station");
		host[sizeof(host) - 1] = '\0';
		host[strcspn(host, ".")] = '\0';
		station = host;
	}
	if (rotate && strlen(station) > SIGN_STATION_MAX) {
		ctl_fail("keygen: station \"%s\" is too long", station);
		goto out;
	}
	if (sign_key_generate(pem, sizeof(pem), err, sizeof(err)) != 0 ||
	    (k = sign_key_from_pem(pem, strlen(pem), err, sizeof(err))) ==
	    NULL) {
		ctl_fail("keygen: %s", err);
		goto out;
	}
	sign_key_public(k, p);
	if (sign_pub_pem(p, pubpem, sizeof(pubpem)) != 0) {
		ctl_fail("keygen: cannot write the public key");
		goto out;
	}
	if (rotate) {
		if (sign_endorse(old, station, p, e) != 0) {
			ctl_fail("keygen: cannot sign the endorsement");
			goto out;
		}
		dbhash_hex(e, 64, 0, hex);
		snprintf(path, sizeof(path), "%s.endorsement", priv);
	}
	if ((rc = keys_write(priv, pem, 0600)) != CTL_OK)
		goto out;
	if ((rc = keys_write(pub, pubpem, 0644)) != CTL_OK) {
		unlink(priv);
		goto out;
	}
	if (rotate) {
		strncat(hex, "\n", sizeof(hex) - strlen(hex) - 1);
		if ((rc = keys_write(path, hex, 0644)) != CTL_OK) {
			unlink(priv);
			unlink(pub);
			goto out;
		}
		printf("%s: endorsed by the previous key for station %s\n",
		    path, station);
	}
	dbhash_hex(p, 32, 0, hex);
	printf("%s: Ed25519 private key (0600)\n%s: public key %s\n", priv,
	    pub, hex);
out:
	explicit_bzero(pem, sizeof(pem));
	sign_key_free(k);
	sign_key_free(old);
	return rc;
}

static const char *const pubkey_help =
"usage: cardlicctl pubkey [--station ID]\n"
"Prints the station's current public key (its newest key row) as PEM,\n"
"the file that auditors give to cardlicctl verify --key.  Compare it\n"
"with the one the station's admin handed over: a key read from the\n"
"database proves nothing by itself.\n";

int
cmd_pubkey(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "station", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *station = NULL;
	struct chain_keyrow k;
	sqlite3_stmt *st, *cnt;
	char pem[512], *want = NULL;
	size_t wn = 0;
	int ch, n = 0, many = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's': station = optarg; break;
		case 'h': fputs(pubkey_help, stdout); return CTL_OK;
		default: return ctl_usage(pubkey_help);
		}
	}
	if (optind != argc)
		return ctl_usage(pubkey_help);
	st = ctl_prepare(c, "SELECT station, reason FROM audit a WHERE state "
	    "= 'key' AND (?1 IS NULL OR station = ?1) AND seq = (SELECT "
	    "max(seq) FROM audit b WHERE b.station = a.station AND b.state = "
	    "'key') ORDER BY station");
	if (st == NULL)
		return CTL_USAGE;
	/* As list takes it: \xNN for a byte, bound as those bytes. */
	if (station != NULL) {
		if ((want = malloc(strlen(station) + 1)) == NULL) {
			sqlite3_finalize(st);
			return ctl_fail("out of memory");
		}
		wn = ctl_unescape(station, want);
		sqlite3_bind_text(st, 1, want, (int)wn, SQLITE_STATIC);
	} else if ((cnt = ctl_prepare(c, "SELECT count(DISTINCT station) FROM "
	    "audit WHERE state = 'key'")) != NULL) {
		many = sqlite3_step(cnt) == SQLITE_ROW &&
		    sqlite3_column_int(cnt, 0) > 1;
		sqlite3_finalize(cnt);
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		/* What verify reads, and not a byte more. */
		if (chain_key_reason(sqlite3_column_blob(st, 1), (size_t)
		    sqlite3_column_bytes(st, 1), &k) != 0 ||
		    sign_pub_pem(k.pub, pem, sizeof(pem)) != 0) {
			ctl_fail("station %s: its key row cannot be read",
			    ctl_esc(sqlite3_column_text(st, 0), (size_t)
			    sqlite3_column_bytes(st, 0)));
			sqlite3_finalize(st);
			free(want);
			return CTL_NOTHING;
		}
		/* A merged database: each key says whose it is. */
		if (many)
			printf("# station %s\n", ctl_esc(sqlite3_column_text(st,
			    0), (size_t)sqlite3_column_bytes(st, 0)));
		n++;
		fputs(pem, stdout);
	}
	sqlite3_finalize(st);
	if (n == 0) {
		ctl_fail("no key row%s%s: the station has never signed its "
		    "rows", station != NULL ? " for station " : "",
		    station != NULL ? ctl_esc(want, wn) : "");
		free(want);
		return CTL_NOTHING;
	}
	free(want);
	return CTL_OK;
}
