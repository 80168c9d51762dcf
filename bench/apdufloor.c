/*
 * The bare APDU floor of one card: the exchanges cardlicd needs, sent
 * directly over PC/SC from one process, with nothing else around them.
 * Batch card: SELECT, GENERATE, GET RESPONSE.  Target card (our simulated
 * protocol, as the middleware sends it): select, info, select, status,
 * select, verify, select, put license, select, status.
 * usage: apdufloor BATCH-READER TARGET-READER N; prints ms per card.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <PCSC/winscard.h>

static SCARDCONTEXT	ctx;

static SCARDHANDLE
fl_connect(const char *reader, DWORD *proto)
{
	SCARDHANDLE h;

	if (SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 |
	    SCARD_PROTOCOL_T1, &h, proto) != SCARD_S_SUCCESS) {
		fprintf(stderr, "apdufloor: cannot connect to %s\n", reader);
		exit(1);
	}
	return h;
}

static unsigned
fl_tx(SCARDHANDLE h, DWORD proto, const BYTE *c, DWORD n)
{
	BYTE r[300];
	DWORD rn = sizeof(r);

	if (SCardTransmit(h, proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 :
	    SCARD_PCI_T1, c, n, NULL, r, &rn) != SCARD_S_SUCCESS || rn < 2) {
		fprintf(stderr, "apdufloor: transmit failed\n");
		exit(1);
	}
	return (unsigned)r[rn - 2] << 8 | r[rn - 1];
}

int
main(int argc, char **argv)
{
	static const BYTE bsel[] = { 0x00, 0xA4, 0x04, 0x0C, 0x09, 0xA0, 0x00,
	    0x00, 0x03, 0x63, 0x4D, 0x57, 0x4C, 0x01 };
	static const BYTE tsel[] = { 0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43,
	    0x4C, 0x53, 0x49, 0x4D, 0x54, 0x47 };
	static const BYTE info[] = { 0x80, 0x10, 0x00, 0x00, 0x23 };
	static const BYTE stat[] = { 0x80, 0xCA, 0x00, 0x00, 0x13 };
	static const BYTE verify[] = { 0x00, 0x20, 0x00, 0x01, 0x04, '1', '2',
	    '3', '4' };
	static const BYTE get[] = { 0x00, 0xC0, 0x00, 0x00, 0x88 };
	BYTE gen[46], put[5 + 128];
	SCARDHANDLE b, t;
	DWORD bp, tp;
	struct timespec t0, t1;
	int i, n;

	if (argc != 4 || (n = atoi(argv[3])) < 1)
		return 2;
	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) !=
	    SCARD_S_SUCCESS)
		return 1;
	b = fl_connect(argv[1], &bp);
	t = fl_connect(argv[2], &tp);
	memcpy(gen, "\x00\xF8\x00\x00\x28" "SIM-MODEL-1     FLOOR0001       "
	    "20261124\x88", 46);
	memcpy(put, "\x80\xD0\x00\x00\x80", 5);
	memset(put + 5, 0x5A, 128);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		fl_tx(t, tp, tsel, sizeof(tsel));
		fl_tx(t, tp, info, sizeof(info));
		fl_tx(t, tp, tsel, sizeof(tsel));
		fl_tx(t, tp, stat, sizeof(stat));
		fl_tx(t, tp, tsel, sizeof(tsel));
		fl_tx(t, tp, verify, sizeof(verify));
		fl_tx(b, bp, bsel, sizeof(bsel));
		if (fl_tx(b, bp, gen, sizeof(gen)) != 0x6188)
			return 1;
		fl_tx(b, bp, get, sizeof(get));
		fl_tx(t, tp, tsel, sizeof(tsel));
		fl_tx(t, tp, put, sizeof(put));
		fl_tx(t, tp, tsel, sizeof(tsel));
		fl_tx(t, tp, stat, sizeof(stat));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f\n", ((double)(t1.tv_sec - t0.tv_sec) * 1000.0 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / n);
	return 0;
}
