/*
 * cardlicctl resolve: an admin's decision on a credit in doubt; and
 * cardlicctl batch-count: a batch card's counter as an admin read it.
 * The database stays read-only here: each goes to the running daemon
 * over its control socket, and the daemon appends it as a row of the
 * chain (`resolved`, `counted`), with the uid that asked.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicctl.h"

static const char *const resolve_help =
"usage: cardlicctl resolve SEQ spent|unspent REASON...\n"
"Decide on the credit in doubt of audit row SEQ (see cardlicctl reconcile):\n"
"  spent     the batch card did spend it (its counter says so): the credit\n"
"            is counted as spent with no license, and the card may be given\n"
"            a new one\n"
"  unspent   the batch card did not spend it: the card may be given one\n"
"The running daemon records the decision, with REASON and your uid, as a\n"
"row of the audit chain.  Only root or the daemon's user may do it.\n";

/*
 * One request to the daemon's control socket (req ends in a newline):
 * its answer to stdout ("ok: ...", exit 0) or stderr (exit 1).
 */
static int
resolve_ask(struct ctl *c, char *req, size_t k, const char *what)
{
	struct sockaddr_un sa;
	char out[1024], *p;
	ssize_t n, got = 0;
	int fd;

	/* The daemon would blank them too: no line ends early. */
	for (p = req; p < req + k - 1; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	if (strlen(c->control) >= sizeof(sa.sun_path))
		return ctl_fail("%s: path too long", c->control);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->control, strlen(c->control) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		ctl_fail("%s: %s: is cardlicd running? The %s is recorded"
		    " by the daemon", c->control, strerror(errno), what);
		if (fd >= 0)
			close(fd);
		return CTL_USAGE;
	}
	if (write(fd, req, k) != (ssize_t)k) {
		close(fd);
		return ctl_fail("%s: %s", c->control, strerror(errno));
	}
	while (got < (ssize_t)sizeof(out) - 1 &&
	    (n = read(fd, out + got, sizeof(out) - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	out[got > 0 ? got : 0] = '\0';
	fputs(out, strncmp(out, "ok:", 3) == 0 ? stdout : stderr);
	return strncmp(out, "ok:", 3) == 0 ? CTL_OK : CTL_NOTHING;
}

/* " WORD WORD ...\n" after req[0..k): 0, or -1 when it does not fit. */
static int
resolve_words(char *req, size_t *k, size_t len, int argc, char **argv)
{
	int i;

	for (i = 0; i < argc && *k < len; i++)
		*k += (size_t)snprintf(req + *k, len - *k, " %s", argv[i]);
	if (*k + 2 >= len)
		return -1;
	req[(*k)++] = '\n';
	req[*k] = '\0';
	return 0;
}

int
cmd_resolve(struct ctl *c, int argc, char **argv)
{
	char req[600], *end;
	size_t k;
	long seq;

	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(resolve_help, stdout);
		return CTL_OK;
	}
	if (argc < 4)
		return ctl_usage(resolve_help);
	seq = strtol(argv[1], &end, 10);
	if (seq <= 0 || *end != '\0')
		return ctl_fail("resolve: \"%s\" is not a row number", argv[1]);
	if (strcmp(argv[2], "spent") != 0 && strcmp(argv[2], "unspent") != 0)
		return ctl_fail("resolve: say spent or unspent, not \"%s\"",
		    argv[2]);
	k = (size_t)snprintf(req, sizeof(req), "resolve %ld %s", seq, argv[2]);
	if (resolve_words(req, &k, sizeof(req), argc - 3, argv + 3) != 0)
		return ctl_fail("resolve: the reason is too long");
	return resolve_ask(c, req, k, "decision");
}

static const char *const batch_count_help =
"usage: cardlicctl batch-count --card LABEL READER N REASON...\n"
"Record N, the batch card's own \"total number of emitted licenses\" as the\n"
"vendor's tool shows it, for the batch card in READER now (its name as\n"
"cardlicctl status prints it).  LABEL is what identifies the card: the\n"
"name written on it (1 to 16 letters, digits, '.', '_', '-'), the same\n"
"at every count of that card, in whatever reader or station it is.  N is\n"
"0 to 2147483647.  Read the counter and type it in while no card is\n"
"being issued.  The running daemon records it, with the card's ATR,\n"
"REASON and your uid, as a row of the audit chain; cardlicctl reconcile\n"
"then checks the rows against the counter, card by card.  Only root or\n"
"the daemon's user may do it.\n";

/* A batch card's label: 1 to 16 letters, digits, '.', '_', '-'. */
static int
resolve_label_ok(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
	    "UVWXYZ0123456789._-");

	return n > 0 && n <= 16 && s[n] == '\0';
}

int
cmd_batch_count(struct ctl *c, int argc, char **argv)
{
	char req[700], reader[300], *end;
	const char *label = NULL;
	size_t k, rlen;
	long long n;

	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(batch_count_help, stdout);
		return CTL_OK;
	}
	if (argc >= 3 && strcmp(argv[1], "--card") == 0) {
		label = argv[2];
		argv += 2;
		argc -= 2;
	} else if (argc >= 2 && strncmp(argv[1], "--card=", 7) == 0) {
		label = argv[1] + 7;
		argv++;
		argc--;
	}
	if (label == NULL)
		return ctl_fail("batch-count: which batch card is it?  Give "
		    "--card LABEL, the name written on it (a reader names no "
		    "card: a card moves, and another takes its place)");
	if (!resolve_label_ok(label))
		return ctl_fail("batch-count: --card \"%s\": want 1 to 16 "
		    "letters, digits, '.', '_', '-'", ctl_esc(label,
		    strlen(label)));
	if (argc < 4)
		return ctl_usage(batch_count_help);
	/* As list and status print it: \xNN for what cannot be shown. */
	if (strlen(argv[1]) >= sizeof(reader))
		return ctl_fail("batch-count: the reader name is too long");
	rlen = ctl_unescape(argv[1], reader);
	reader[rlen] = '\0';
	if (rlen == 0 || strlen(reader) != rlen)
		return ctl_fail("batch-count: \"%s\" is not a reader name",
		    ctl_esc(argv[1], strlen(argv[1])));
	errno = 0;
	n = strtoll(argv[2], &end, 10);
	if (argv[2][0] < '0' || argv[2][0] > '9' || *end != '\0' ||
	    errno != 0 || n > 2147483647LL)
		return ctl_fail("batch-count: \"%s\" is not a count: want a "
		    "number from 0 to 2147483647", ctl_esc(argv[2],
		    strlen(argv[2])));
	k = (size_t)snprintf(req, sizeof(req), "batch-count %lld %zu %s %s", n,
	    rlen, reader, label);
	if (k >= sizeof(req) || resolve_words(req, &k, sizeof(req), argc - 3,
	    argv + 3) != 0)
		return ctl_fail("batch-count: the reason is too long");
	return resolve_ask(c, req, k, "count");
}
