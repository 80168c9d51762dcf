/*
 * simpcsc: the PC/SC side of sim/line.  It talks to whichever pcscd the
 * client library finds (PCSCLITE_CSOCK_NAME), lists readers, waits for a
 * reader count or a card state, and sends APDUs by hand.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <PCSC/winscard.h>
#include <PCSC/pcsclite.h>

static SCARDCONTEXT	sp_ctx;

static void
sp_fail(const char *what, LONG rv)
{
	fprintf(stderr, "simpcsc: %s: %s (0x%08lX)\n", what,
	    pcsc_stringify_error(rv), (unsigned long)rv);
	exit(1);
}

static long
sp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reader names, NUL separated; count in *n.  Returns NULL for none. */
static char *
sp_readers(int *n)
{
	DWORD len = 0;
	char *buf, *p;
	LONG rv;

	*n = 0;
	rv = SCardListReaders(sp_ctx, NULL, NULL, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE)
		return NULL;
	if (rv != SCARD_S_SUCCESS)
		sp_fail("SCardListReaders", rv);
	if ((buf = malloc(len)) == NULL)
		sp_fail("malloc", SCARD_E_NO_MEMORY);
	rv = SCardListReaders(sp_ctx, NULL, buf, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE) {
		free(buf);
		return NULL;
	}
	if (rv != SCARD_S_SUCCESS)
		sp_fail("SCardListReaders", rv);
	for (p = buf; *p != '\0'; p += strlen(p) + 1)
		(*n)++;
	return buf;
}

/* The reader named exactly, or the index-th one when name is a number. */
static char *
sp_find(const char *name)
{
	char *buf, *p, *end;
	int n, i = 0;
	long idx;

	idx = strtol(name, &end, 10);
	buf = sp_readers(&n);
	for (p = buf; p != NULL && *p != '\0'; p += strlen(p) + 1, i++) {
		if (strcmp(p, name) == 0 || (*end == '\0' && i == idx)) {
			p = strdup(p);
			free(buf);
			return p;
		}
	}
	free(buf);
	fprintf(stderr, "simpcsc: no reader \"%s\"\n", name);
	exit(1);
}

static int
sp_hex(const char *s, BYTE *out, DWORD *len)
{
	DWORD n = 0;
	int hi = -1, v;

	for (; *s != '\0'; s++) {
		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'f')
			v = (*s | 0x20) - 'a' + 10;
		else
			return -1;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == MAX_BUFFER_SIZE)
			return -1;
		out[n++] = (BYTE)(hi << 4 | v);
		hi = -1;
	}
	*len = n;
	return hi < 0 ? 0 : -1;
}

static int
sp_cmd_apdu(int argc, char **argv)
{
	SCARDHANDLE h;
	DWORD proto, len, rlen, i;
	BYTE cmd[MAX_BUFFER_SIZE], resp[MAX_BUFFER_SIZE];
	char *reader = sp_find(argv[0]);
	LONG rv;
	int k;

	rv = SCardConnect(sp_ctx, reader, SCARD_SHARE_SHARED,
	    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &h, &proto);
	if (rv != SCARD_S_SUCCESS)
		sp_fail(reader, rv);
	for (k = 1; k < argc; k++) {
		if (sp_hex(argv[k], cmd, &len) != 0 || len < 4) {
			fprintf(stderr, "simpcsc: bad APDU \"%s\"\n", argv[k]);
			return 2;
		}
		rlen = sizeof(resp);
		rv = SCardTransmit(h, proto == SCARD_PROTOCOL_T0 ?
		    SCARD_PCI_T0 : SCARD_PCI_T1, cmd, len, NULL, resp, &rlen);
		if (rv != SCARD_S_SUCCESS)
			sp_fail("SCardTransmit", rv);
		for (i = 0; i < rlen; i++)
			printf("%02X", resp[i]);
		putchar('\n');
	}
	SCardDisconnect(h, SCARD_LEAVE_CARD);
	free(reader);
	return 0;
}

/* Wait until at least n readers exist; print them. */
static int
sp_cmd_wait_readers(int want, long timeout_ms)
{
	long deadline = sp_now_ms() + timeout_ms;
	char *buf, *p;
	int n;

	for (;;) {
		buf = sp_readers(&n);
		if (n >= want) {
			for (p = buf; *p != '\0'; p += strlen(p) + 1)
				printf("%s\n", p);
			free(buf);
			return 0;
		}
		free(buf);
		if (sp_now_ms() > deadline) {
			fprintf(stderr, "simpcsc: %d of %d readers after "
			    "%ld ms\n", n, want, timeout_ms);
			return 1;
		}
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	}
}

/* Wait until the reader holds a card (present) or none (empty). */
static int
sp_cmd_wait_card(const char *name, const char *what, long timeout_ms)
{
	SCARD_READERSTATE rs;
	long deadline = sp_now_ms() + timeout_ms, left;
	int want = strcmp(what, "present") == 0;
	LONG rv;

	memset(&rs, 0, sizeof(rs));
	rs.szReader = sp_find(name);
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	for (;;) {
		left = deadline - sp_now_ms();
		rv = SCardGetStatusChange(sp_ctx, left < 0 ? 0 : (DWORD)left,
		    &rs, 1);
		if (rv == SCARD_E_TIMEOUT)
			break;
		if (rv != SCARD_S_SUCCESS)
			sp_fail("SCardGetStatusChange", rv);
		if (!!(rs.dwEventState & SCARD_STATE_PRESENT) == want)
			return 0;
		rs.dwCurrentState = rs.dwEventState;
	}
	fprintf(stderr, "simpcsc: %s: card not %s after %ld ms\n",
	    rs.szReader, what, timeout_ms);
	return 1;
}

int
main(int argc, char **argv)
{
	char *buf, *p;
	LONG rv;
	int n;

	if (argc < 2) {
		fprintf(stderr, "usage: simpcsc readers | wait-readers N MS |"
		    " wait-card READER present|empty MS |"
		    " apdu READER HEX...\n");
		return 2;
	}
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &sp_ctx);
	if (rv != SCARD_S_SUCCESS)
		sp_fail("SCardEstablishContext", rv);
	if (strcmp(argv[1], "readers") == 0) {
		buf = sp_readers(&n);
		for (p = buf; p != NULL && *p != '\0'; p += strlen(p) + 1)
			printf("%s\n", p);
		free(buf);
		return 0;
	}
	if (strcmp(argv[1], "wait-readers") == 0 && argc == 4)
		return sp_cmd_wait_readers(atoi(argv[2]), atol(argv[3]));
	if (strcmp(argv[1], "wait-card") == 0 && argc == 5)
		return sp_cmd_wait_card(argv[2], argv[3], atol(argv[4]));
	if (strcmp(argv[1], "apdu") == 0 && argc >= 4)
		return sp_cmd_apdu(argc - 2, argv + 2);
	fprintf(stderr, "simpcsc: unknown command\n");
	return 2;
}
