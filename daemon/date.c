/*
 * Calendar dates as the vendor contract writes them: 8 ASCII digits,
 * YYYYMMDD, with 00000000 meaning "no limit".  Arithmetic is done on a
 * day number (days since 1970-01-01, proleptic Gregorian) so that adding
 * days never goes through struct tm and its time-zone surprises.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "date.h"

/* Howard Hinnant's days_from_civil, valid far beyond 0001..9999. */
long
date_to_days(int y, int m, int d)
{
	long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void
date_from_days(long z, int *y, int *m, int *d)
{
	long era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static int
date_days_in_month(int y, int m)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return mdays[m - 1];
}

int
date_parse(const char *s, size_t len, long *days)
{
	int y = 0, m = 0, d = 0;
	size_t i;

	if (len != 8)
		return -1;
	for (i = 0; i < 8; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (i < 4)
			y = y * 10 + (s[i] - '0');
		else if (i < 6)
			m = m * 10 + (s[i] - '0');
		else
			d = d * 10 + (s[i] - '0');
	}
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > date_days_in_month(y, m))
		return -1;
	*days = date_to_days(y, m, d);
	return 0;
}

void
date_format(long days, char out[DATE_LEN + 1])
{
	int y, m, d, i;
	int v[3];

	date_from_days(days, &y, &m, &d);
	v[0] = y; v[1] = m; v[2] = d;
	/* Fixed-width digits by hand: no sprintf, and no locale involved. */
	for (i = 3; i >= 0; i--, v[0] /= 10)
		out[i] = (char)('0' + v[0] % 10);
	out[4] = (char)('0' + v[1] / 10);
	out[5] = (char)('0' + v[1] % 10);
	out[6] = (char)('0' + v[2] / 10);
	out[7] = (char)('0' + v[2] % 10);
	out[8] = '\0';
}

long
date_first_of_next_month(long days)
{
	int y, m, d;

	date_from_days(days, &y, &m, &d);
	if (++m > 12) {
		m = 1;
		y++;
	}
	return date_to_days(y, m, 1);
}

/*
 * Today in the given time zone (NULL: the process's own TZ).  The
 * environment variable CARDLIC_TODAY=YYYYMMDD overrides it, so that tests
 * can stand on any day; it is honoured only when it parses.
 */
long
date_today(const char *tz)
{
	const char *fake = getenv("CARDLIC_TODAY");
	time_t now;
	struct tm tm;
	long days;

	if (fake != NULL && date_parse(fake, strlen(fake), &days) == 0)
		return days;
	now = time(NULL);
	if (tz != NULL && date_tz_localtime(tz, now, &tm) == 0)
		return date_to_days(tm.tm_year + 1900, tm.tm_mon + 1,
		    tm.tm_mday);
	localtime_r(&now, &tm);
	return date_to_days(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/*
 * localtime in a named zone.  glibc only offers this through TZ, which is
 * process-wide; the daemon sets its zone once at start-up and on reload
 * from the main thread, so this is called with tz already applied unless
 * "UTC" is asked for, which needs no zone database.
 */
int
date_tz_localtime(const char *tz, time_t t, struct tm *tm)
{
	if (strcmp(tz, "UTC") == 0)
		return gmtime_r(&t, tm) == NULL ? -1 : 0;
	return localtime_r(&t, tm) == NULL ? -1 : 0;
}

/*
 * Now, as the audit rows and checkpoints stamp it: UTC to the
 * millisecond, YYYY-MM-DDTHH:MM:SS.mmmZ.
 */
void
date_utc_now(char out[64])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Microseconds, monotonic: a card's timings, the loop's stuck-job check. */
long
date_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
