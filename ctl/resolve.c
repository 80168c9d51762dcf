/*
 * cardlicctl resolve: an admin's decision on a credit in doubt.  The
 * database stays read-only here: the decision goes to the running daemon
 * over its control socket, and the daemon appends it as a `resolved` row
 * of the chain, with the uid that asked.
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

int
cmd_resolve(struct ctl *c, int argc, char **argv)
{
	struct sockaddr_un sa;
	char req[600], out[1024], *end;
	size_t k;
	ssize_t n, got = 0;
	long seq;
	int fd, i;

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
	for (i = 3; i < argc && k < sizeof(req); i++)
		k += (size_t)snprintf(req + k, sizeof(req) - k, " %s", argv[i]);
	if (k + 2 >= sizeof(req))
		return ctl_fail("resolve: the reason is too long");
	for (end = req; *end != '\0'; end++)
		if ((unsigned char)*end < 0x20)
			*end = ' ';
	req[k++] = '\n';
	req[k] = '\0';
	if (strlen(c->control) >= sizeof(sa.sun_path))
		return ctl_fail("%s: path too long", c->control);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->control, strlen(c->control) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		ctl_fail("%s: %s: is cardlicd running? The decision is recorded"
		    " by the daemon", c->control, strerror(errno));
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
