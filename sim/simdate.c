/*
 * YYYYMMDD dates for the simulated cards.  Day numbers count from
 * 1970-01-01 and go through the Julian Day Number (Fliegel and Van
 * Flandern, CACM 11(10), 1968): a different method from the daemon's on
 * purpose, so that the two cannot share one mistake.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simdate.h"

#define SIMDATE_JDN_1970	2440588L

static long
simdate_jdn(long y, long m, long d)
{
	/* C division truncates toward zero, as the algorithm expects. */
	return (1461 * (y + 4800 + (m - 14) / 12)) / 4 +
	    (367 * (m - 2 - 12 * ((m - 14) / 12))) / 12 -
	    (3 * ((y + 4900 + (m - 14) / 12) / 100)) / 4 + d - 32075;
}

static void
simdate_civil(long jd, long *y, long *m, long *d)
{
	long l, n, i, j;

	l = jd + 68569;
	n = 4 * l / 146097;
	l -= (146097 * n + 3) / 4;
	i = 4000 * (l + 1) / 1461001;
	l = l - 1461 * i / 4 + 31;
	j = 80 * l / 2447;
	*d = l - 2447 * j / 80;
	l = j / 11;
	*m = j + 2 - 12 * l;
	*y = 100 * (n - 49) + i + l;
}

/*
 * 8 ASCII digits naming a real day of 0001..9999: 0 and its day number.
 * A day that does not exist (20260230) does not survive the round trip.
 */
int
simdate_parse(const char *s, long *days)
{
	long v[3] = { 0, 0, 0 }, y, m, d, jd;
	int i;

	for (i = 0; i < SIMDATE_LEN; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v[i < 4 ? 0 : i < 6 ? 1 : 2] =
		    v[i < 4 ? 0 : i < 6 ? 1 : 2] * 10 + (s[i] - '0');
	}
	if (v[0] < 1 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31)
		return -1;
	jd = simdate_jdn(v[0], v[1], v[2]);
	simdate_civil(jd, &y, &m, &d);
	if (y != v[0] || m != v[1] || d != v[2])
		return -1;
	*days = jd - SIMDATE_JDN_1970;
	return 0;
}

void
simdate_format(long days, char out[SIMDATE_LEN + 1])
{
	long y, m, d;
	int i;

	simdate_civil(days + SIMDATE_JDN_1970, &y, &m, &d);
	for (i = 3; i >= 0; i--, y /= 10)
		out[i] = (char)('0' + y % 10);
	out[4] = (char)('0' + m / 10);
	out[5] = (char)('0' + m % 10);
	out[6] = (char)('0' + d / 10);
	out[7] = (char)('0' + d % 10);
	out[8] = '\0';
}

/* The card's "today": CARDLIC_TODAY=YYYYMMDD, else the local date. */
long
simdate_today(void)
{
	const char *fake = getenv("CARDLIC_TODAY");
	struct tm tm;
	time_t now;
	long days;

	if (fake != NULL && strlen(fake) == SIMDATE_LEN &&
	    simdate_parse(fake, &days) == 0)
		return days;
	now = time(NULL);
	localtime_r(&now, &tm);
	return simdate_jdn(tm.tm_year + 1900L, tm.tm_mon + 1L, tm.tm_mday) -
	    SIMDATE_JDN_1970;
}
